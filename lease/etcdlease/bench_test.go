package etcdlease_test

import (
	"context"
	"flag"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

var benchTrials = flag.Int("etcdlease.benchtrials", 8, "failover trials per elector in each iteration of BenchmarkFailover")

// benchTTL is the lease TTL both electors run with in BenchmarkFailover.
const benchTTL = 2 * time.Second

// failoverSample is one trial: how long after the holder's link was cut
// the successor's Campaign returned, and how the holder's own signal
// related to that moment.
type failoverSample struct {
	failover time.Duration
	// doneFirst: the holder's signal (Term.Done, Session.Done) was closed
	// when the successor's Campaign returned.
	doneFirst bool
	// margin: successor's win minus the holder's signal; negative when
	// the signal came after the win. Unknown (false ok) if it never came
	// within the observation window.
	margin   time.Duration
	marginOK bool
	// early: the holder gave up its term before it was cut off (under
	// load); failover is then not measured.
	early bool
}

// BenchmarkFailover measures failover (holder's link cut → successor's
// Campaign returns) for etcdlease and for a bare concurrency.Election on
// a concurrency.Session with the same TTL, alternating trials in one run.
// Each iteration runs -etcdlease.benchtrials trials of each; with the
// default -benchtime one iteration is enough.
//
// Metrics: failover p50/p99 in ms for both, their p50 ratio, the smallest
// margin by which etcdlease's Done preceded the takeover, and for the bare
// election the fraction of trials in which Session.Done had not fired when
// the successor won, with the worst lateness.
func BenchmarkFailover(b *testing.B) {
	s := etcdtest.Start(b)
	seed := time.Now().UnixNano()
	b.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	var ours, bare []failoverSample
	for b.Loop() {
		for range *benchTrials {
			cut := time.Duration(rng.Int64N(int64(benchTTL / 3)))
			ours = append(ours, etcdleaseFailover(b, s, cut))
			bare = append(bare, bareFailover(b, s, cut))
		}
	}
	b.StopTimer()

	p50o, p99o := percentiles(ours)
	p50b, p99b := percentiles(bare)
	b.ReportMetric(ms(p50o), "etcdlease-p50-ms")
	b.ReportMetric(ms(p99o), "etcdlease-p99-ms")
	b.ReportMetric(ms(p50b), "bare-p50-ms")
	b.ReportMetric(ms(p99b), "bare-p99-ms")
	b.ReportMetric(float64(p50o)/float64(p50b), "p50-ratio")

	minMargin := time.Duration(1<<63 - 1)
	for _, o := range ours {
		if !o.doneFirst || !o.marginOK || o.margin <= 0 {
			b.Errorf("etcdlease trial with the holder's Done not before the takeover: %+v", o)
		}
		minMargin = min(minMargin, o.margin)
	}
	b.ReportMetric(ms(minMargin), "etcdlease-min-margin-ms")

	late, worst := 0, time.Duration(0)
	for _, o := range bare {
		if !o.doneFirst {
			late++
			if o.marginOK {
				worst = max(worst, -o.margin)
			} else {
				worst = max(worst, benchTTL) // never fired in the window
			}
		}
	}
	b.ReportMetric(float64(late)/float64(len(bare)), "bare-done-late-frac")
	b.ReportMetric(ms(worst), "bare-done-late-max-ms")
}

func etcdleaseFailover(b *testing.B, s *etcdtest.Server, cut time.Duration) failoverSample {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(b)
	a := newMember(b, s, prefix, "a", benchTTL)
	c := newMember(b, s, prefix, "b", benchTTL)
	ta := mustCampaign(b, a.e)
	won := campaignAsync(ctx, c.e, ta.Done())
	waitCampaigning(b, ctx, c, prefix, 2, won)
	<-time.After(cut)
	a.proxy.Blackhole(etcdtest.Both)
	start := time.Now()
	r := <-won
	if r.err != nil {
		b.Fatalf("etcdlease successor: %v", r.err)
	}
	a.proxy.Heal()
	smp := failoverSample{failover: r.at.Sub(start), doneFirst: r.prevDone}
	if end := ta.EndedAt(); !end.IsZero() {
		smp.margin, smp.marginOK = r.at.Sub(end), true
	}
	c.e.Close()
	a.e.Close()
	return smp
}

func bareFailover(b *testing.B, s *etcdtest.Server, cut time.Duration) failoverSample {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(b)
	pa, pc := etcdtest.NewProxy(b, s), etcdtest.NewProxy(b, s)
	ca, cc := pa.Client(b), pc.Client(b)
	ttl := int(benchTTL / time.Second)
	sa, err := concurrency.NewSession(ca, concurrency.WithTTL(ttl))
	if err != nil {
		b.Fatal(err)
	}
	sc, err := concurrency.NewSession(cc, concurrency.WithTTL(ttl))
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	ea, ec := concurrency.NewElection(sa, prefix), concurrency.NewElection(sc, prefix)
	if err := ea.Campaign(ctx, "a"); err != nil {
		b.Fatal(err)
	}
	doneAt := make(chan time.Time, 1)
	go func() {
		select {
		case <-sa.Done():
			doneAt <- time.Now()
		case <-ctx.Done():
		}
	}()
	won := make(chan campaignResult, 1)
	go func() {
		err := ec.Campaign(ctx, "b")
		won <- campaignResult{err: err, at: time.Now(), prevDone: isClosed(sa.Done())}
	}()
	waitCampaigning(b, ctx, &member{client: cc}, prefix, 2, won)
	<-time.After(cut)
	pa.Blackhole(etcdtest.Both)
	start := time.Now()
	r := <-won
	if r.err != nil {
		b.Fatalf("bare successor: %v", r.err)
	}
	smp := failoverSample{failover: r.at.Sub(start), doneFirst: r.prevDone}
	select {
	case at := <-doneAt:
		smp.margin, smp.marginOK = r.at.Sub(at), true
	case <-time.After(benchTTL):
	}
	pa.Heal()
	sa.Orphan()
	return smp
}

func percentiles(s []failoverSample) (p50, p99 time.Duration) {
	d := make([]time.Duration, len(s))
	for i, x := range s {
		d[i] = x.failover
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1)+0.5)] }
	return at(0.5), at(0.99)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
