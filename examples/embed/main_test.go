package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/raftlease/raftcert"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
)

// childEnv carries a member's options to a child process of the test.
const childEnv = "EMBED_TEST_MEMBER"

// TestMain lets the test binary run one member, as a separate process, for
// TestThreeProcessesForwardSwitchover.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		var o options
		if err := json.Unmarshal([]byte(spec), &o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := run(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "member", o.id, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The options travel as JSON; their fields are unexported.
func (o options) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"id": o.id, "listen": o.listen, "api": o.api, "peers": o.peers,
		"data": o.data, "source": o.source, "sink": o.sink, "token": o.token,
		"ca": o.ca, "cert": o.cert, "key": o.key, "insecure": o.insecure})
}

func (o *options) UnmarshalJSON(b []byte) error {
	var m struct {
		ID, Listen, API, Data, Source, Sink, Token string
		CA, Cert, Key                              string
		Insecure                                   bool
		Peers                                      map[string]string
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*o = options{id: m.ID, listen: m.Listen, api: m.API, peers: m.Peers, data: m.Data, source: m.Source, sink: m.Sink, token: m.Token,
		ca: m.CA, cert: m.Cert, key: m.Key, insecure: m.Insecure}
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func primary(listen string) bool {
	resp, err := http.Get("http://" + listen + "/primary")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestRunSingleMember runs the README's wiring as a group of one: the
// member becomes active, says so on /primary, and stops cleanly.
func TestRunSingleMember(t *testing.T) {
	dir := t.TempDir()
	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{id: "a", peers: map[string]string{"a": freeAddr(t)}, listen: listen, api: "http://" + listen,
			data: filepath.Join(dir, "raft"), source: filepath.Join(dir, "changes"), sink: filepath.Join(dir, "target.log")})
	}()
	waitFor(t, 10*time.Second, "the member to become active", func() bool { return primary(listen) })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

// The README's wiring, run as three processes on one host: a switchover
// asked of a standby reaches the active member (it is forwarded to the
// API address the active member advertises through Raft, with the admin
// token) and hands the active role to the member named; the target ends
// equal to the source.
func TestThreeProcessesForwardSwitchover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three member processes")
	}
	dir := t.TempDir()
	source := filepath.Join(dir, "changes")
	w, err := filelog.OpenWriter(source, filelog.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var want [][]byte
	write := func(n int) {
		for range n {
			d := fmt.Appendf(nil, "change-%04d", len(want))
			if _, err := w.Append(d); err != nil {
				t.Fatal(err)
			}
			want = append(want, d)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	write(50)

	ids := []string{"a", "b", "c"}
	peers, listen := map[string]string{}, map[string]string{}
	for _, id := range ids {
		peers[id], listen[id] = freeAddr(t), freeAddr(t)
	}
	const token = "test-admin-token"
	caFile := writeMemberCerts(t, dir, ids)
	for _, id := range ids {
		o := options{id: id, peers: peers, listen: listen[id], api: "http://" + listen[id], token: token,
			data: filepath.Join(dir, "raft-"+id), source: source, sink: filepath.Join(dir, "target.log"),
			ca: caFile, cert: filepath.Join(dir, id+".crt"), key: filepath.Join(dir, id+".key")}
		spec, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("member %s exited with %v; output:\n%s", id, err, out.String())
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("member %s did not stop after SIGTERM; output:\n%s", id, out.String())
			}
		})
	}

	active := func() []string {
		var on []string
		for _, id := range ids {
			if primary(listen[id]) {
				on = append(on, id)
			}
		}
		return on
	}
	var first string
	waitFor(t, 30*time.Second, "one member to become active", func() bool {
		on := active()
		if len(on) == 1 {
			first = on[0]
		}
		return len(on) == 1
	})
	var standby, to string
	for _, id := range ids {
		switch {
		case id == first:
		case standby == "":
			standby = id
		default:
			to = id
		}
	}

	req, err := http.NewRequest(http.MethodPost, "http://"+listen[standby]+"/switchover?to="+to, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /switchover?to=%s on standby %s (active %s): %s %q", to, standby, first, resp.Status, body)
	}
	waitFor(t, 30*time.Second, "member "+to+" to become active", func() bool {
		on := active()
		return len(on) == 1 && on[0] == to
	})

	write(20)
	waitFor(t, 30*time.Second, "the target to hold every record", func() bool {
		got, err := filesink.ReadRecords(filepath.Join(dir, "target.log"))
		return err == nil && len(got) >= len(want)
	})
	got, err := filesink.ReadRecords(filepath.Join(dir, "target.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("target has %d records, source %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: target %q, source %q", i, got[i], want[i])
		}
	}
}

// writeMemberCerts writes a CA and a certificate naming each member into
// dir, as "hamirror certs" would, and returns the CA's file.
func writeMemberCerts(t *testing.T, dir string, ids []string) string {
	t.Helper()
	ca, err := raftcert.NewCA("embed test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "raft-ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		cert, err := ca.Issue(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		key, err := raftcert.KeyPEM(cert)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+".crt"), raftcert.CertPEM(cert), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id+".key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile
}
