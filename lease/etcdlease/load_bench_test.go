package etcdlease_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

var (
	loadTrials = flag.Int("etcdlease.loadtrials", 24, "failover trials per elector in BenchmarkFailoverUnderLoad")
	hogProcs   = flag.Int("etcdlease.hogprocs", 2, "GOMAXPROCS of the holder's process in BenchmarkFailoverUnderLoad")
	hogSpins   = flag.Int("etcdlease.hogspins", 4, "busy goroutines in the holder's process in BenchmarkFailoverUnderLoad")
	hogThreads = flag.Int("etcdlease.hogthreads", 2*runtime.NumCPU(), "busy threads of the separate CPU hog process in BenchmarkFailoverUnderLoad")
	hogNice    = flag.Int("etcdlease.hognice", 5, "nice value of the CPU hog process")
	holderNice = flag.Int("etcdlease.holdernice", 15, "nice value of the holder's process")
	hogEnv     = "ETCDLEASE_CPU_HOG"
)

// TestCPUHogChild is not a test: BenchmarkFailoverUnderLoad runs the test
// binary with it as a CPU hog process, which spins until its stdin closes.
func TestCPUHogChild(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(hogEnv))
	if err != nil {
		t.Skip("the CPU hog of BenchmarkFailoverUnderLoad; not a test")
	}
	runtime.GOMAXPROCS(n)
	for range n {
		go spin()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// niced returns a command that runs the test binary with args at nice n.
func niced(n int, args ...string) *exec.Cmd {
	return exec.Command("nice", append([]string{"-n", strconv.Itoa(n), os.Args[0]}, args...)...)
}

// startHog starts the hog process; the returned function stops it.
func startHog(b *testing.B) func() {
	b.Helper()
	cmd := niced(*hogNice, "-test.run=^TestCPUHogChild$")
	cmd.Env = append(os.Environ(), hogEnv+"="+strconv.Itoa(*hogThreads))
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return func() {
		in.Close()
		_ = cmd.Wait()
	}
}

// holderEnv carries a holderSpec to the child process that holds the lease
// in BenchmarkFailoverUnderLoad.
const holderEnv = "ETCDLEASE_LOAD_HOLDER"

// holderSpec is what the holder process does.
type holderSpec struct {
	Endpoint string        // etcd, through the benchmark's fault-injecting proxy
	Prefix   string        // the election
	Bare     bool          // a concurrency.Election instead of etcdlease
	TTL      time.Duration // both
	Procs    int           // GOMAXPROCS of the holder process
	Spins    int           // busy goroutines competing with the holder's own
}

// TestLoadHolderChild is not a test: BenchmarkFailoverUnderLoad runs the
// test binary with it as the process that holds the lease, starved of CPU
// by busy goroutines of its own. It prints "won" once it leads, and "done
// <unix nanoseconds>" when its signal (Term.Done, Session.Done) closes, and
// exits when its stdin closes.
func TestLoadHolderChild(t *testing.T) {
	spec := os.Getenv(holderEnv)
	if spec == "" {
		t.Skip("the lease holder of BenchmarkFailoverUnderLoad; not a test")
	}
	var h holderSpec
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		t.Fatal(err)
	}
	if err := holdUnderLoad(h, os.Stdout); err != nil {
		fmt.Println("error", err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func holdUnderLoad(h holderSpec, out io.Writer) error {
	runtime.GOMAXPROCS(h.Procs)
	cfg := clientv3.Config{Endpoints: []string{h.Endpoint}, DialTimeout: 5 * time.Second}
	fastReconnect(&cfg)
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var done <-chan struct{}
	var endedAt func() time.Time
	if h.Bare {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(h.TTL/time.Second)))
		if err != nil {
			return err
		}
		if err := concurrency.NewElection(s, h.Prefix).Campaign(ctx, "a"); err != nil {
			return err
		}
		done, endedAt = s.Done(), time.Now
	} else {
		e, err := etcdlease.New(etcdlease.Config{Client: cli, ID: "a", Prefix: h.Prefix, TTL: h.TTL})
		if err != nil {
			return err
		}
		term, err := e.Campaign(ctx)
		if err != nil {
			return err
		}
		done, endedAt = term.Done(), term.(*etcdlease.Term).EndedAt
	}
	// The load starts once the lease is held: the measurement is of a
	// holder that is starved, not of a slow start.
	for range h.Spins {
		go spin()
	}
	fmt.Fprintln(out, "won")
	<-done
	fmt.Fprintln(out, "done", endedAt().UnixNano())
	return nil
}

// spin burns CPU for ever.
func spin() {
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			runtime.Gosched() // never: keeps x live
		}
	}
}

// BenchmarkFailoverUnderLoad measures, with the holder starved of CPU, the
// lead by which the cut-off holder's signal (etcdlease's Term.Done, with
// its default DriftMargin; the bare election's Session.Done) precedes its
// successor's win, for etcdlease and for a bare concurrency.Election with
// the same TTL (2 s), alternating trials in one run. Each holder runs in a
// process of its own with GOMAXPROCS -etcdlease.hogprocs and
// -etcdlease.hogspins busy goroutines (the CPU hog); etcd, the proxies and
// the successor run in the benchmark's process, as on other machines.
// Each iteration runs -etcdlease.loadtrials trials of each; one iteration
// is enough.
//
// Metrics: etcdlease's smallest and median lead, and the number of trials
// below DriftMargin/2 (the target is none; each such trial fails the
// benchmark); both electors' failover p50; the bare election's fraction of
// trials whose signal came after the successor's win, and its smallest
// lead (negative: late).
func BenchmarkFailoverUnderLoad(b *testing.B) {
	s := etcdtest.Start(b)
	seed := time.Now().UnixNano()
	b.Logf("seed %d; %d CPUs; holder at nice %d, GOMAXPROCS %d, %d busy goroutines; hog process at nice %d, %d busy threads",
		seed, runtime.NumCPU(), *holderNice, *hogProcs, *hogSpins, *hogNice, *hogThreads)
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	margin := etcdlease.DefaultDriftMargin(benchTTL)
	stopHog := startHog(b)
	defer stopHog()
	var ours, bare []failoverSample
	for b.Loop() {
		for range *loadTrials {
			cut := time.Duration(rng.Int64N(int64(benchTTL / 3)))
			ours = append(ours, starvedFailover(b, s, false, cut))
			bare = append(bare, starvedFailover(b, s, true, cut))
		}
	}
	b.StopTimer()

	var leads []time.Duration
	below, early := 0, 0
	for _, o := range ours {
		if o.early {
			early++
		}
		if !o.doneFirst || !o.marginOK {
			b.Errorf("etcdlease trial with the holder's Done not before the takeover: %+v", o)
			continue
		}
		leads = append(leads, o.margin)
		if o.margin < margin/2 {
			below++
			b.Errorf("etcdlease trial with a lead of %v, below DriftMargin/2 = %v", o.margin, margin/2)
		}
	}
	slices.Sort(leads)
	b.Logf("etcdlease leads, smallest first (%d trials, %d of them ended by the holder before the cut): %v", len(ours), early, roundAll(leads))
	if len(leads) > 0 {
		b.ReportMetric(ms(leads[0]), "etcdlease-min-lead-ms")
		b.ReportMetric(ms(leads[len(leads)/2]), "etcdlease-p50-lead-ms")
	}
	b.ReportMetric(float64(below), "etcdlease-trials-below-half-margin")
	b.ReportMetric(float64(early), "etcdlease-stepped-down-before-cut")
	b.ReportMetric(ms(margin), "drift-margin-ms")
	p50o, _ := percentiles(cutTrials(ours))
	p50b, _ := percentiles(cutTrials(bare))
	b.ReportMetric(ms(p50o), "etcdlease-failover-p50-ms")
	b.ReportMetric(ms(p50b), "bare-failover-p50-ms")

	late, minBare := 0, time.Duration(1<<62)
	for _, o := range bare {
		if !o.doneFirst {
			late++
		}
		if o.marginOK {
			minBare = min(minBare, o.margin)
		} else {
			minBare = min(minBare, -benchTTL) // never fired within the window
		}
	}
	var bareLeads []time.Duration
	for _, o := range bare {
		if o.marginOK {
			bareLeads = append(bareLeads, o.margin)
		}
	}
	slices.Sort(bareLeads)
	b.Logf("bare election leads, smallest first (negative: the holder's Session.Done came after the takeover): %v", roundAll(bareLeads))
	b.ReportMetric(float64(late)/float64(len(bare)), "bare-done-late-frac")
	b.ReportMetric(ms(minBare), "bare-min-lead-ms")
}

// starvedFailover runs one trial: a starved holder process wins, a
// successor in this process waits, the holder's link is cut after cut, and
// the lead is the successor's win minus the holder's signal.
func starvedFailover(b *testing.B, s *etcdtest.Server, bareElection bool, cut time.Duration) failoverSample {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(b)
	p := etcdtest.NewProxy(b, s)
	spec, _ := json.Marshal(holderSpec{Endpoint: p.Endpoint(), Prefix: prefix, Bare: bareElection, TTL: benchTTL, Procs: *hogProcs, Spins: *hogSpins})
	cmd := niced(*holderNice, "-test.run=^TestLoadHolderChild$")
	cmd.Env = append(os.Environ(), holderEnv+"="+string(spec))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string, within time.Duration) (string, bool) {
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, prefix) {
				b.Fatalf("holder process: %q, want %q", l, prefix)
			}
			return strings.TrimSpace(strings.TrimPrefix(l, prefix)), true
		case <-time.After(within):
			return "", false
		}
	}
	if _, ok := expect("won", 60*time.Second); !ok {
		b.Fatal("holder process did not win within 60s")
	}

	// The successor: an etcdlease member or a bare session, unstarved.
	var won <-chan campaignResult
	var waiter *member
	if bareElection {
		cli := etcdtest.NewProxy(b, s).Client(b, fastReconnect)
		sess, err := concurrency.NewSession(cli, concurrency.WithTTL(int(benchTTL/time.Second)))
		if err != nil {
			b.Fatal(err)
		}
		defer sess.Close()
		ch := make(chan campaignResult, 1)
		go func() {
			err := concurrency.NewElection(sess, prefix).Campaign(ctx, "b")
			ch <- campaignResult{err: err, at: time.Now()}
		}()
		won, waiter = ch, &member{client: cli}
	} else {
		m := newMember(b, s, prefix, "b", benchTTL)
		won, waiter = campaignAsync(ctx, m.e, nil), m
		defer m.e.Close()
	}
	// Wait for the successor to queue up, then cut the holder off. A
	// starved holder may give up before (etcdlease steps down when its
	// timers run too late): the successor then wins early, and the trial
	// records the lead but no failover.
	var r campaignResult
	early := false
	for deadline := time.Now().Add(15 * time.Second); ; {
		select {
		case r = <-won:
			early = true
		default:
		}
		if early {
			break
		}
		resp, err := waiter.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the successor did not queue up")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	var start time.Time
	if !early {
		<-time.After(cut)
		p.Blackhole(etcdtest.Both)
		start = time.Now()
		r = <-won
	}
	if r.err != nil {
		b.Fatalf("successor: %v", r.err)
	}
	smp := failoverSample{failover: r.at.Sub(start), early: early}
	if v, ok := expect("done", 2*benchTTL); ok {
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("holder process: done %q: %v", v, err)
		}
		at := time.Unix(0, ns)
		smp.margin, smp.marginOK, smp.doneFirst = r.at.Sub(at), true, at.Before(r.at)
	}
	p.Heal()
	return smp
}

// cutTrials returns the samples of trials in which the holder was cut off
// (not those where it stepped down before).
func cutTrials(s []failoverSample) []failoverSample {
	var out []failoverSample
	for _, x := range s {
		if !x.early {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return []failoverSample{{}}
	}
	return out
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
