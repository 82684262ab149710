package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// testDaemon is one daemon run in this process through the same path as
// "hamirror run" (newDaemon, then run).
type testDaemon struct {
	id     string
	d      *daemon
	api    string
	cancel context.CancelFunc
	done   chan error
}

// daemonConfigs returns valid configs of n members sharing a source log
// and a sink, on free loopback ports.
func daemonConfigs(t *testing.T, n int, backend string, endpoints []string) []*Config {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	members := map[string]Member{}
	for i := range n {
		api, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		raft, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		members[string(rune('a'+i))] = Member{API: "http://" + api, Raft: raft}
	}
	var out []*Config
	for id, m := range members {
		c := &Config{
			ID: id, Listen: strings.TrimPrefix(m.API, "http://"), Members: members, AdminTokenFile: tokenFile,
			Source:  SourceConfig{Dir: filepath.Join(dir, "source"), PollInterval: Duration(5 * time.Millisecond)},
			Sink:    SinkConfig{Path: filepath.Join(dir, "target.log")},
			Stream:  StreamConfig{CheckpointInterval: Duration(100 * time.Millisecond)},
			Backend: backend,
			Raft:    RaftConfig{DataDir: filepath.Join(dir, "raft-"+id), TickInterval: Duration(50 * time.Millisecond), Insecure: true},
			Etcd:    EtcdConfig{Endpoints: endpoints, TTL: Duration(2 * time.Second), Prefix: "test/"},
			HA:      HAConfig{HoldOff: Duration(200 * time.Millisecond)},
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func startDaemon(t *testing.T, c *Config) *testDaemon {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() && os.Getenv("HAMIRROR_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("member", c.ID)
	}
	d, err := newDaemon(context.Background(), c, logger)
	if err != nil {
		t.Fatalf("member %s: %v", c.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{id: c.ID, d: d, api: c.Members[c.ID].API, cancel: cancel, done: make(chan error, 1)}
	go func() { td.done <- d.run(ctx) }()
	t.Cleanup(func() { td.stop(t) })
	return td
}

// stop is the SIGTERM path: cancel, then wait for the clean shutdown.
func (td *testDaemon) stop(t *testing.T) {
	t.Helper()
	if td.cancel == nil {
		return
	}
	td.cancel()
	td.cancel = nil
	select {
	case err := <-td.done:
		if err != nil {
			t.Errorf("member %s stopped with %v", td.id, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("member %s did not stop", td.id)
	}
}

func activeOf(ds []*testDaemon) *testDaemon {
	for _, d := range ds {
		if d.cancel != nil && d.d.node.Status().Role == ha.RoleActive {
			return d
		}
	}
	return nil
}

// appendRecords appends records from..to-1 to the source log.
func appendRecords(t *testing.T, w *filelog.Writer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := w.Append(changeRecord(uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// targetReader reads every committed record of a target, in order.
type targetReader func() ([][]byte, error)

func fileTarget(path string) targetReader {
	return func() ([][]byte, error) { return filesink.ReadRecords(path) }
}

func waitTarget(t *testing.T, read targetReader, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d records in the target", n), func() bool {
		recs, err := read()
		return err == nil && len(recs) >= n
	})
}

func checkTarget(t *testing.T, read targetReader, n int) {
	t.Helper()
	recs, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("target holds %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if want := changeRecord(uint64(i)); !bytes.Equal(r, want) {
			t.Fatalf("target record %d = %q, want %q", i, r, want)
		}
	}
}

// testDaemonFailover runs members, replicates, stops the active one the
// way SIGTERM does, checks that another takes over and that the target is
// exactly the source.
//
// ca, if set, is the CA bundle that verifies https APIs; read reads the
// target (nil: the file sink of the configs).
func testDaemonFailover(t *testing.T, cfgs []*Config, ca string, read targetReader) {
	if read == nil {
		read = fileTarget(cfgs[0].Sink.Path)
	}
	var ds []*testDaemon
	for _, c := range cfgs {
		ds = append(ds, startDaemon(t, c))
	}
	w, err := filelog.OpenWriter(cfgs[0].Source.Dir, filelog.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendRecords(t, w, 0, 300)
	waitTarget(t, read, 300)
	first := activeOf(ds)
	if first == nil {
		t.Fatal("records replicated but no member is active")
	}
	checkEndpoints(t, ds, first, ca)

	first.stop(t)
	waitFor(t, "a successor", func() bool { a := activeOf(ds); return a != nil && a != first })
	appendRecords(t, w, 300, 600)
	waitTarget(t, read, 600)
	for _, d := range ds {
		d.stop(t)
	}
	checkTarget(t, read, 600)
}

// checkEndpoints checks the HTTP API of a running cluster: the status
// table, the load balancer endpoint and the metrics.
func checkEndpoints(t *testing.T, ds []*testDaemon, active *testDaemon, ca string) {
	t.Helper()
	var members []string
	for _, d := range ds {
		members = append(members, d.id+"="+d.api)
	}
	args := []string{"status", "-members", strings.Join(members, ",")}
	client := http.DefaultClient
	if ca != "" {
		if code, _, _ := run(args...); code != 1 {
			t.Errorf("status without the CA: exit %d, want 1 (no member trusted)", code)
		}
		args = append(args, "-ca", ca)
		tlsc, err := clientTLS("ca", &TLSFiles{CA: ca})
		if err != nil {
			t.Fatal(err)
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsc}}
	}
	code, out, errOut := run(args...)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, l := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 6 && f[0] == active.id && (f[1] != "active" || !strings.HasSuffix(f[5], "s") || f[6] == "-") {
			t.Errorf("active member's status row has no lag or records: %q", l)
		}
	}
	for _, d := range ds {
		resp, err := client.Get(d.api + "/lb")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 200, false: 503}[d == active]; resp.StatusCode != want {
			t.Errorf("member %s: GET /lb = %d, want %d", d.id, resp.StatusCode, want)
		}
	}
	resp, err := client.Get(active.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"hamirror_records_total", "hamirror_lag_seconds", `hakit_role{member="` + active.id + `",role="active"} 1`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestDaemonRaft(t *testing.T) {
	testDaemonFailover(t, daemonConfigs(t, 3, "raft", nil), "", nil)
}

func TestDaemonEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	testDaemonFailover(t, daemonConfigs(t, 2, "etcd", srv.Endpoints()), "", nil)
}

// TestHTTPServerLimits: the API's server bounds slow and idle clients and
// header size; an oversized header is answered 431 without reaching the
// handler.
func TestHTTPServerLimits(t *testing.T) {
	var reached atomic.Bool
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Store(true) }), nil, slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("server without limits: %+v", srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/status", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", 2*httpMaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || reached.Load() {
		t.Fatalf("oversized header: status %d, handler reached %v", resp.StatusCode, reached.Load())
	}
}
