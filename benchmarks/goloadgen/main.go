// Command goloadgen is the Go twin of benchmarks/loadgen.py: many simulated
// sidecar ADS clients in one process, SotW or Delta, speaking the same
// JSON-lines protocol with the driver (benchmarks/run.py --loadgen go).
//
// Each client: CDS wildcard, EDS for its EDS clusters, LDS wildcard, RDS for
// the HCM route names; every response ACKed. CDS and LDS are decoded; EDS and
// RDS resource bytes are only searched for the armed marker. Times are
// CLOCK_MONOTONIC seconds, the clock Python's time.monotonic() reads.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	cdsURL = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	edsURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ldsURL = "type.googleapis.com/envoy.config.listener.v3.Listener"
	rdsURL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	hcm    = "envoy.filters.network.http_connection_manager"
)

var short = map[string]string{cdsURL: "CDS", edsURL: "EDS", ldsURL: "LDS", rdsURL: "RDS"}
var long = map[string]string{"CDS": cdsURL, "EDS": edsURL, "LDS": ldsURL, "RDS": rdsURL}

func monotonic() float64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func cpuTime() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

type watch struct {
	id     string
	marker []byte
}

type genSeen struct {
	gen int
	t   float64
}

type loadgen struct {
	server     string
	delta      bool
	namespaces int
	proc       int
	perChannel int
	retry      bool

	mu          sync.Mutex
	outMu       sync.Mutex
	clients     []*client
	watches     map[string]*watch // type url -> watch
	results     map[string]map[int]float64
	ready       int
	readyID     *string
	phaseStart  float64
	responses   map[string]int
	bytes       int64
	retries     int
	errCodes    map[string]int
	stopping    bool
	halting     bool
	conns       []*grpc.ClientConn
	wg          sync.WaitGroup
	churnID     *string
	churnPrefix []byte
	churnTarget int
	churnDone   int
	churnSeen   map[int][]genSeen
}

type client struct {
	g      *loadgen
	index  int
	node   *corev3.Node
	cancel context.CancelFunc
	// protocol state, reset on every (re)connect
	send         func(proto.Message)
	first        bool
	eds          map[string]bool
	routes       map[string]bool
	edsNames     []string // sorted(eds), kept: every EDS ACK repeats it (as Envoy's does)
	routeNames   []string // sorted(routes)
	ldsRequested bool
	have         map[string]bool
	readyAt      *float64
	version      map[string]string
	nonce        map[string]string
	clusters     map[string]string
	listeners    map[string]map[string]bool
	churnMax     int
}

func (c *client) reset() {
	c.first = true
	c.eds = map[string]bool{}
	c.routes = map[string]bool{}
	c.edsNames = nil
	c.routeNames = nil
	c.ldsRequested = false
	c.have = map[string]bool{}
	c.readyAt = nil
	c.version = map[string]string{}
	c.nonce = map[string]string{}
	c.clusters = map[string]string{}
	c.listeners = map[string]map[string]bool{}
}

func identity(index, namespaces int) (ns, ip, id string) {
	ns = fmt.Sprintf("ns-%d", index%namespaces)
	ip = fmt.Sprintf("10.%d.%d.%d", 200+(index>>16)%50, (index>>8)&0xFF, index&0xFF)
	id = fmt.Sprintf("sidecar~%s~client-%d.%s~%s.svc.cluster.local", ip, index, ns, ns)
	return
}

func makeNode(index, namespaces int) *corev3.Node {
	ns, _, id := identity(index, namespaces)
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":         ns,
		"LABELS":            map[string]any{"app": fmt.Sprintf("client-%d", index)},
		"INTERCEPTION_MODE": "NONE",
		"SERVICE_ACCOUNT":   "default",
		"WORKLOAD_NAME":     fmt.Sprintf("client-%d", index),
	})
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, Cluster: "client." + ns, Metadata: md}
}

func (g *loadgen) emit(obj map[string]any) {
	b, _ := json.Marshal(obj)
	g.outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	g.outMu.Unlock()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The responses are walked with protowire instead of being unmarshalled into
// the generated types: the loadgen only needs a few fields, and a full decode
// of 2,000 clients x 1,000 clusters costs more CPU than the server under test.

// each calls fn for every length-delimited (v) or varint (x) field of b.
func each(b []byte, fn func(num protowire.Number, v []byte, x uint64)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			fn(num, v, 0)
			b = b[m:]
		case protowire.VarintType:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return
			}
			fn(num, nil, x)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return
			}
			b = b[m:]
		}
	}
}

// Cluster: name=1, type=2 (EDS=3), eds_cluster_config=3 {service_name=2}.
func edsNamesOf(values [][]byte) map[string]string {
	out := map[string]string{}
	for _, raw := range values {
		var name, svc string
		isEDS := false
		each(raw, func(num protowire.Number, v []byte, x uint64) {
			switch num {
			case 1:
				name = string(v)
			case 2:
				isEDS = x == 3
			case 3:
				each(v, func(n protowire.Number, v []byte, _ uint64) {
					if n == 2 {
						svc = string(v)
					}
				})
			}
		})
		if isEDS {
			if svc == "" {
				svc = name
			}
			out[name] = svc
		}
	}
	return out
}

// Listener: filter_chains=3, default_filter_chain=25; FilterChain: filters=3;
// Filter: name=1, typed_config=4 (Any: type_url=1, value=2);
// HttpConnectionManager: rds=3 {route_config_name=2}.
func routeNamesOf(values [][]byte) map[string]bool {
	out := map[string]bool{}
	filter := func(fb []byte) {
		var name string
		var tc []byte
		each(fb, func(n protowire.Number, v []byte, _ uint64) {
			switch n {
			case 1:
				name = string(v)
			case 4:
				tc = v
			}
		})
		if tc == nil {
			return
		}
		var url string
		var val []byte
		each(tc, func(n protowire.Number, v []byte, _ uint64) {
			switch n {
			case 1:
				url = string(v)
			case 2:
				val = v
			}
		})
		if name != hcm && !bytes.HasSuffix([]byte(url), []byte("HttpConnectionManager")) {
			return
		}
		each(val, func(n protowire.Number, v []byte, _ uint64) {
			if n == 3 {
				each(v, func(n protowire.Number, v []byte, _ uint64) {
					if n == 2 {
						out[string(v)] = true
					}
				})
			}
		})
	}
	for _, raw := range values {
		each(raw, func(num protowire.Number, v []byte, _ uint64) {
			if num == 3 || num == 25 {
				each(v, func(n protowire.Number, v []byte, _ uint64) {
					if n == 3 {
						filter(v)
					}
				})
			}
		})
	}
	return out
}

// response is the part of a (Delta)DiscoveryResponse the client uses.
type response struct {
	typeURL, version, nonce string
	names                   []string // Delta: resource names
	values                  [][]byte // resource bytes (Any.value)
	removed                 []string
	size                    int
}

func anyValue(b []byte) []byte {
	var val []byte
	each(b, func(n protowire.Number, v []byte, _ uint64) {
		if n == 2 {
			val = v
		}
	})
	return val
}

// DiscoveryResponse: version_info=1, resources=2 (Any), type_url=4, nonce=5.
// DeltaDiscoveryResponse: resources=2 (Resource: name=3, resource=2 Any),
// type_url=4, nonce=5, removed_resources=6.
func parseResponse(b []byte, delta bool) *response {
	r := &response{size: len(b)}
	each(b, func(num protowire.Number, v []byte, _ uint64) {
		switch num {
		case 1:
			r.version = string(v)
		case 2:
			if delta {
				var name string
				var val []byte
				each(v, func(n protowire.Number, v []byte, _ uint64) {
					switch n {
					case 3:
						name = string(v)
					case 2:
						val = anyValue(v)
					}
				})
				r.names = append(r.names, name)
				r.values = append(r.values, val)
			} else {
				r.values = append(r.values, anyValue(v))
			}
		case 4:
			r.typeURL = string(v)
		case 5:
			r.nonce = string(v)
		case 6:
			if delta {
				r.removed = append(r.removed, string(v))
			}
		}
	})
	return r
}

// rawCodec hands the wire bytes through: requests are marshalled by the
// client, responses walked with protowire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	b := make([]byte, len(data)) // grpc reuses data after we return
	copy(b, data)
	*(v.(*[]byte)) = b
	return nil
}
func (rawCodec) Name() string { return "proto" }

func equalSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// --- per client protocol -------------------------------------------------------

func (c *client) sendMsg(m proto.Message) {
	if c.first {
		switch r := m.(type) {
		case *discoveryv3.DiscoveryRequest:
			r.Node = c.node
		case *discoveryv3.DeltaDiscoveryRequest:
			r.Node = c.node
		}
		c.first = false
	}
	c.send(m)
}

func (c *client) initialComplete() bool {
	need := []string{"CDS", "LDS"}
	if len(c.eds) > 0 {
		need = append(need, "EDS")
	}
	if len(c.routes) > 0 {
		need = append(need, "RDS")
	}
	if !c.ldsRequested {
		return false
	}
	for _, n := range need {
		if !c.have[n] {
			return false
		}
	}
	return true
}

// acked records a response as received at `now`: the moment the client had
// it decoded, taken before it builds and sends its ACK (the proxy has the
// config then; the ACK's cost is the client's, not the server's latency).
func (c *client) acked(t string, values [][]byte, size int, now float64) {
	s := short[t]
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	c.have[s] = true
	g.responses[s]++
	g.bytes += int64(size)
	if w := g.watches[t]; w != nil {
		got := g.results[w.id]
		if _, done := got[c.index]; !done && containsAny(values, w.marker) {
			got[c.index] = now
			if len(got) == len(g.clients) {
				g.reportLocked(w.id)
			}
		}
	}
	if g.churnID != nil && t == edsURL {
		g.churnLocked(c, values, now)
	}
	if c.readyAt == nil && c.initialComplete() {
		c.readyAt = &now
		g.ready++
		if g.ready == len(g.clients) {
			g.emitReadyLocked()
		}
	}
}

func containsAny(values [][]byte, marker []byte) bool {
	for _, v := range values {
		if bytes.Contains(v, marker) {
			return true
		}
	}
	return false
}

func (c *client) onSotw(resp *response, now float64) {
	t := resp.typeURL
	c.version[t], c.nonce[t] = resp.version, resp.nonce
	values, size := resp.values, resp.size
	ack := func(t string, names []string) {
		c.sendMsg(&discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: c.version[t], ResponseNonce: c.nonce[t], ResourceNames: names})
	}
	switch t {
	case cdsURL:
		eds := map[string]bool{}
		for _, sn := range edsNamesOf(values) {
			eds[sn] = true
		}
		ack(t, nil)
		if !equalSet(eds, c.eds) {
			c.eds = eds
			c.edsNames = sortedKeys(eds)
			ack(edsURL, c.edsNames)
		}
		if !c.ldsRequested {
			c.ldsRequested = true
			c.sendMsg(&discoveryv3.DiscoveryRequest{TypeUrl: ldsURL})
		}
	case ldsURL:
		routes := routeNamesOf(values)
		ack(t, nil)
		if !equalSet(routes, c.routes) {
			c.routes = routes
			c.routeNames = sortedKeys(routes)
			ack(rdsURL, c.routeNames)
		}
	case edsURL:
		ack(t, c.edsNames)
	case rdsURL:
		ack(t, c.routeNames)
	}
	c.acked(t, values, size, now)
}

func (c *client) onDelta(resp *response, now float64) {
	t := resp.typeURL
	c.sendMsg(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.nonce})
	values, size := resp.values, resp.size
	switch t {
	case cdsURL:
		for _, n := range resp.removed {
			delete(c.clusters, n)
		}
		for _, n := range resp.names {
			delete(c.clusters, n)
		}
		for k, v := range edsNamesOf(values) {
			c.clusters[k] = v
		}
		eds := map[string]bool{}
		for _, v := range c.clusters {
			eds[v] = true
		}
		var sub, unsub []string
		for n := range eds {
			if !c.eds[n] {
				sub = append(sub, n)
			}
		}
		for n := range c.eds {
			if !eds[n] {
				unsub = append(unsub, n)
			}
		}
		c.eds = eds
		if len(sub) > 0 || len(unsub) > 0 {
			sort.Strings(sub)
			sort.Strings(unsub)
			c.sendMsg(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: edsURL, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub})
		}
		if !c.ldsRequested {
			c.ldsRequested = true
			c.sendMsg(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: ldsURL})
		}
	case ldsURL:
		for _, n := range resp.removed {
			delete(c.listeners, n)
		}
		for i, n := range resp.names {
			c.listeners[n] = routeNamesOf([][]byte{values[i]})
		}
		routes := map[string]bool{}
		for _, rs := range c.listeners {
			for r := range rs {
				routes[r] = true
			}
		}
		var sub, unsub []string
		for n := range routes {
			if !c.routes[n] {
				sub = append(sub, n)
			}
		}
		for n := range c.routes {
			if !routes[n] {
				unsub = append(unsub, n)
			}
		}
		c.routes = routes
		if len(sub) > 0 || len(unsub) > 0 {
			sort.Strings(sub)
			sort.Strings(unsub)
			c.sendMsg(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: rdsURL, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub})
		}
	}
	c.acked(t, values, size, now)
}

func (c *client) run(ctx context.Context, conn *grpc.ClientConn) {
	g := c.g
	for attempt := 0; ; attempt++ {
		g.mu.Lock()
		stop := g.stopping || g.halting
		g.mu.Unlock()
		if stop || ctx.Err() != nil {
			return
		}
		if attempt > 0 {
			g.mu.Lock()
			g.retries++
			g.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(50+rand.Intn(200)) * time.Millisecond):
			}
		}
		g.mu.Lock()
		c.reset()
		g.mu.Unlock()
		err := c.stream(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		if err == io.EOF {
			g.mu.Lock()
			g.errCodes["EOF (stream ended OK)"]++
			g.mu.Unlock()
		}
		if err != nil && err != io.EOF {
			g.mu.Lock()
			g.errCodes[errCode(err)]++
			g.mu.Unlock()
			if !g.retry {
				g.emit(map[string]any{"event": "client_error", "client": c.index, "error": err.Error()})
				return
			}
		}
	}
}

func errCode(err error) string {
	return status.Code(err).String()
}

const (
	sotwMethod  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

func (c *client) stream(ctx context.Context, conn *grpc.ClientConn) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	method := sotwMethod
	if c.g.delta {
		method = deltaMethod
	}
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	st, err := conn.NewStream(sctx, desc, method, grpc.ForceCodec(rawCodec{}), grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	var sendErr error
	c.send = func(m proto.Message) {
		if sendErr == nil {
			b, err := proto.Marshal(m)
			if err != nil {
				panic(err)
			}
			sendErr = st.SendMsg(&b)
		}
	}
	if c.g.delta {
		c.sendMsg(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: cdsURL})
	} else {
		c.sendMsg(&discoveryv3.DiscoveryRequest{TypeUrl: cdsURL})
	}
	for {
		var raw []byte
		if err := st.RecvMsg(&raw); err != nil {
			return err
		}
		resp := parseResponse(raw, c.g.delta)
		now := monotonic()
		if c.g.delta {
			c.onDelta(resp, now)
		} else {
			c.onSotw(resp, now)
		}
	}
}

// --- driver protocol ---------------------------------------------------------------

func (g *loadgen) emitReadyLocked() {
	first, last := 0.0, 0.0
	var times []any
	for i, c := range g.clients {
		v := 0.0
		if c.readyAt != nil {
			v = *c.readyAt
		}
		if i == 0 || v < first {
			first = v
		}
		if v > last {
			last = v
		}
		if g.readyID != nil {
			if c.readyAt != nil {
				times = append(times, v)
			} else {
				times = append(times, nil)
			}
		}
	}
	var rid any
	if g.readyID != nil {
		rid = *g.readyID
	}
	g.emit(map[string]any{
		"event": "ready", "id": rid, "proc": g.proc, "clients": len(g.clients), "retries": g.retries,
		"connect_s": monotonic() - g.phaseStart, "first_ready": first, "last_ready": last, "times": times,
		"cpu": cpuTime(),
	})
}

func (g *loadgen) reportLocked(wid string) {
	got := g.results[wid]
	for t, w := range g.watches {
		if w.id == wid {
			delete(g.watches, t)
		}
	}
	times := make([]any, len(g.clients))
	for i, c := range g.clients {
		if v, ok := got[c.index]; ok {
			times[i] = v
		}
	}
	g.emit(map[string]any{"event": "result", "proc": g.proc, "id": wid, "times": times, "cpu": cpuTime()})
}

func (g *loadgen) churnLocked(c *client, values [][]byte, now float64) {
	best := -1
	for _, v := range values {
		off := 0
		for {
			i := bytes.Index(v[off:], g.churnPrefix)
			if i < 0 {
				break
			}
			p := off + i + len(g.churnPrefix)
			a, n1 := readInt(v, p)
			if n1 > 0 && p+n1 < len(v) && v[p+n1] == '.' {
				b, n2 := readInt(v, p+n1+1)
				if n2 > 0 && a*256+b > best {
					best = a*256 + b
				}
			}
			off = off + i + 1
		}
	}
	if best > c.churnMax {
		c.churnMax = best
		g.churnSeen[c.index] = append(g.churnSeen[c.index], genSeen{best, now})
		if g.churnTarget > 0 && best >= g.churnTarget {
			g.churnDone++
			if g.churnDone == len(g.clients) {
				g.reportChurnLocked()
			}
		}
	}
}

func readInt(b []byte, p int) (int, int) {
	n, v := 0, 0
	for p+n < len(b) && b[p+n] >= '0' && b[p+n] <= '9' {
		v = v*10 + int(b[p+n]-'0')
		n++
	}
	return v, n
}

func (g *loadgen) reportChurnLocked() {
	if g.churnID == nil {
		return
	}
	seen := make([][][2]float64, len(g.clients))
	for i, c := range g.clients {
		seen[i] = [][2]float64{}
		for _, s := range g.churnSeen[c.index] {
			seen[i] = append(seen[i], [2]float64{float64(s.gen), s.t})
		}
	}
	g.emit(map[string]any{"event": "churn_result", "proc": g.proc, "id": *g.churnID, "seen": seen, "cpu": cpuTime()})
	g.churnID = nil
}

func (g *loadgen) forgetReadyLocked(id string) {
	g.readyID = &id
	g.ready = 0
	g.phaseStart = monotonic()
	for _, c := range g.clients {
		c.readyAt = nil
		c.have = map[string]bool{}
	}
}

func (g *loadgen) connectAll() {
	params := grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 5 * time.Second,
	}
	g.conns = nil
	var conn *grpc.ClientConn
	for i, c := range g.clients {
		if i%g.perChannel == 0 {
			var err error
			conn, err = grpc.NewClient(g.server,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithConnectParams(params),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
			)
			if err != nil {
				panic(err)
			}
			g.conns = append(g.conns, conn)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.cancel = cancel
		g.wg.Add(1)
		go func(c *client, conn *grpc.ClientConn) {
			defer g.wg.Done()
			c.run(ctx, conn)
		}(c, conn)
	}
}

func (g *loadgen) reconnectAll() {
	g.mu.Lock()
	g.halting = true
	g.mu.Unlock()
	for _, c := range g.clients {
		c.cancel()
	}
	g.wg.Wait()
	for _, conn := range g.conns {
		conn.Close()
	}
	g.mu.Lock()
	g.halting = false
	g.mu.Unlock()
	g.connectAll()
}

func (g *loadgen) onCommand(line []byte) bool {
	var cmd map[string]any
	if json.Unmarshal(line, &cmd) != nil {
		return true
	}
	str := func(k string) string { s, _ := cmd[k].(string); return s }
	g.mu.Lock()
	defer g.mu.Unlock()
	switch str("cmd") {
	case "arm":
		t := long[str("type")]
		m, _ := hex.DecodeString(str("marker"))
		g.watches[t] = &watch{id: str("id"), marker: m}
		g.results[str("id")] = map[int]float64{}
		g.emit(map[string]any{"event": "armed", "proc": g.proc, "id": str("id"), "cpu": cpuTime()})
	case "collect":
		for _, w := range g.watches {
			if w.id == str("id") {
				g.reportLocked(w.id)
				break
			}
		}
	case "arm_churn":
		id := str("id")
		g.churnID = &id
		g.churnPrefix, _ = hex.DecodeString(str("prefix"))
		g.churnTarget, g.churnDone = 0, 0
		g.churnSeen = map[int][]genSeen{}
		for _, c := range g.clients {
			c.churnMax = -1
		}
		g.emit(map[string]any{"event": "armed", "proc": g.proc, "id": id, "cpu": cpuTime()})
	case "churn_target":
		if g.churnID != nil && *g.churnID == str("id") {
			gen, _ := cmd["gen"].(float64)
			g.churnTarget = int(gen)
			g.churnDone = 0
			for _, c := range g.clients {
				if c.churnMax >= g.churnTarget {
					g.churnDone++
				}
			}
			if g.churnDone == len(g.clients) {
				g.reportChurnLocked()
			}
		}
	case "collect_churn":
		if g.churnID != nil && *g.churnID == str("id") {
			g.reportChurnLocked()
		}
	case "reconnect":
		g.forgetReadyLocked(str("id"))
		go g.reconnectAll()
	case "await_ready":
		g.forgetReadyLocked(str("id"))
	case "stats":
		errs := 0
		g.emit(map[string]any{
			"event": "stats", "proc": g.proc, "cpu": cpuTime(), "ready": g.ready, "retries": g.retries,
			"errors": errs, "error_kinds": g.errCodes, "responses": g.responses, "bytes": g.bytes,
		})
	case "quit":
		g.stopping = true
		return false
	}
	return true
}

func main() {
	server := flag.String("server", "", "HOST:PORT of the plaintext xDS port")
	first := flag.Int("first", 0, "index of the first client")
	count := flag.Int("count", 250, "clients")
	transport := flag.String("transport", "sotw", "sotw or delta")
	namespaces := flag.Int("namespaces", 10, "")
	perChannel := flag.Int("streams-per-channel", 1, "")
	proc := flag.Int("proc", 0, "")
	noRetry := flag.Bool("no-retry", false, "report stream errors, do not reconnect")
	flag.Parse()
	// plenty of memory, little CPU: collect less often
	debug.SetGCPercent(400)
	g := &loadgen{
		server: *server, delta: *transport == "delta", namespaces: *namespaces, proc: *proc,
		perChannel: max(1, *perChannel), retry: !*noRetry,
		watches: map[string]*watch{}, results: map[string]map[int]float64{},
		responses: map[string]int{"CDS": 0, "EDS": 0, "LDS": 0, "RDS": 0}, errCodes: map[string]int{},
		phaseStart: monotonic(),
	}
	for i := *first; i < *first+*count; i++ {
		c := &client{g: g, index: i, node: makeNode(i, *namespaces), churnMax: -1}
		c.reset()
		g.clients = append(g.clients, c)
	}
	g.connectAll()
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if !g.onCommand(sc.Bytes()) {
			break
		}
	}
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	for _, c := range g.clients {
		c.cancel()
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}
