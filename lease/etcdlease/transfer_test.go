package etcdlease_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// TestTransfer runs the Transfer cases on one etcd server, each on an
// election of its own.
func TestTransfer(t *testing.T) {
	s := etcdtest.Start(t)
	t.Run("ToLaterWaiter", func(t *testing.T) { testTransferToLaterWaiter(t, s) })
	t.Run("Refused", func(t *testing.T) { testTransferRefused(t, s) })
	t.Run("TargetCutOff", func(t *testing.T) { testTransferTargetCutOff(t, s) })
	t.Run("HoldOffUntilExpiry", func(t *testing.T) { testHoldOffUntilExpiry(t, s) })
	t.Run("AheadCutOff", func(t *testing.T) { testTransferAheadCutOff(t, s) })
}

// testTransferToLaterWaiter: b waits longer than c, yet a transfer to c
// makes c the leader; a's Done closed before c's Campaign returned,
// observers see a then c with nothing between, b keeps waiting and wins
// after c resigns, and tokens increase throughout.
func testTransferToLaterWaiter(t *testing.T, s *etcdtest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", 2*time.Second)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	c := newMember(t, s, prefix, "c", 2*time.Second)
	ta := mustCampaign(t, a.e)
	obs := b.e.Observe(ctx)
	if l := <-obs; l.ID != "a" {
		t.Fatalf("first observed leader %+v, want a", l)
	}
	wonB := campaignAsync(ctx, b.e, ta.Done())
	waitCampaigning(t, ctx, b, prefix, 2, wonB)
	wonC := campaignAsync(ctx, c.e, ta.Done())
	waitCampaigning(t, ctx, c, prefix, 3, wonC)

	if err := a.e.Transfer(ctx, "c"); err != nil {
		t.Fatalf("Transfer to c: %v", err)
	}
	errIs(t, ta.Err(), lease.ErrResigned)
	var rc campaignResult
	select {
	case rc = <-wonC:
	case r := <-wonB:
		t.Fatalf("b won a transfer to c: %+v", r)
	}
	if rc.err != nil {
		t.Fatalf("c's Campaign: %v", rc.err)
	}
	if !rc.prevDone {
		t.Fatal("c's Campaign returned while a's Done was still open")
	}
	tc := rc.term.(*etcdlease.Term)
	if tc.Token() <= ta.Token() {
		t.Fatalf("c's token %d is not above a's %d", tc.Token(), ta.Token())
	}
	if l, err := a.e.Leader(ctx); err != nil || l != tc.Leader() {
		t.Fatalf("Leader after the transfer: %+v, %v; want %+v", l, err, tc.Leader())
	}
	if l := <-obs; l != tc.Leader() {
		t.Fatalf("observed leader after a: %+v, want c %+v and nothing between", l, tc.Leader())
	}
	if resp, err := a.client.Get(ctx, a.e.HandoverKey()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("handover record after the transfer: %v, %v; want none", resp, err)
	}
	select {
	case r := <-wonB:
		t.Fatalf("b won while c holds: %+v", r)
	default:
	}

	// b gave way but still waits, and wins once c resigns.
	if err := tc.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	rb := <-wonB
	if rb.err != nil {
		t.Fatalf("b's Campaign after c resigned: %v", rb.err)
	}
	if rb.term.Token() <= tc.Token() {
		t.Fatalf("b's token %d is not above c's %d", rb.term.Token(), tc.Token())
	}
	if l := <-obs; l.ID != "b" || l.Token != rb.term.Token() {
		t.Fatalf("observed leader after c: %+v, want b with token %d", l, rb.term.Token())
	}
}

// testTransferRefused: a transfer to a member with no campaign waiting
// fails with ErrNotWaiting and leaves the holder holding; a transfer by a
// member that holds nothing fails with ErrNotHolding; both name the
// members.
func testTransferRefused(t *testing.T, s *etcdtest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", 2*time.Second)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	ta := mustCampaign(t, a.e)

	tests := []struct {
		name     string
		from     *member
		to       string
		want     error
		mentions []string
	}{
		{"target not waiting", a, "b", etcdlease.ErrNotWaiting, []string{`"a"`, `"b"`}},
		{"target unknown", a, "nobody", etcdlease.ErrNotWaiting, []string{`"a"`, `"nobody"`}},
		{"target is the holder", a, "a", etcdlease.ErrNotWaiting, []string{`"a"`}},
		{"not the holder", b, "a", etcdlease.ErrNotHolding, []string{`"b"`, `"a"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.from.e.Transfer(ctx, tt.to)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Transfer: %v, want %v", err, tt.want)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Fatalf("error %q does not name %s", err, m)
				}
			}
			if ta.Err() != nil || isClosed(ta.Done()) {
				t.Fatalf("the holder's term ended: %v", ta.Err())
			}
			if ok, err := stillHolds(ctx, a.client, ta); err != nil || !ok {
				t.Fatalf("the holder's key is gone: %v, %v", ok, err)
			}
			if l, err := b.e.Leader(ctx); err != nil || l.ID != "a" {
				t.Fatalf("Leader: %+v, %v; want a", l, err)
			}
			if resp, err := a.client.Get(ctx, a.e.HandoverKey()); err != nil || len(resp.Kvs) != 0 {
				t.Fatalf("handover record after a refused transfer: %v, %v", resp, err)
			}
		})
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := a.e.Transfer(cctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Transfer with an ended context: %v", err)
	}
	if err := a.e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.e.Transfer(ctx, "b"); !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Transfer after Close: %v", err)
	}
}

// testTransferTargetCutOff: the named member is cut off from etcd in the
// middle of the handover, after the holder resigned. It never wins; once
// its key is gone the holder's Transfer reports ErrNotWaiting, the handover
// record goes, and b — which had given way — takes over.
func testTransferTargetCutOff(t *testing.T, s *etcdtest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", 2*time.Second)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	c := newMember(t, s, prefix, "c", 2*time.Second)
	ta := mustCampaign(t, a.e)
	wonB := campaignAsync(ctx, b.e, ta.Done())
	waitCampaigning(t, ctx, b, prefix, 2, wonB)
	wonC := campaignAsync(ctx, c.e, nil)
	waitCampaigning(t, ctx, c, prefix, 3, wonC)

	// c's key stays in etcd until its lease expires, so the holder still
	// finds c waiting, b gives way to it, and a resigns.
	c.proxy.Blackhole(etcdtest.Both)
	start := time.Now()
	err := a.e.Transfer(ctx, "c")
	if !errors.Is(err, etcdlease.ErrNotWaiting) {
		t.Fatalf("Transfer to a member cut off mid-handover: %v, want ErrNotWaiting", err)
	}
	errIs(t, ta.Err(), lease.ErrResigned)
	rb := <-wonB
	if rb.err != nil {
		t.Fatalf("b's Campaign: %v", rb.err)
	}
	if !rb.prevDone || rb.term.Token() <= ta.Token() {
		t.Fatalf("b won with token %d (a's %d), a's Done closed first: %v", rb.term.Token(), ta.Token(), rb.prevDone)
	}
	t.Logf("b took over %v after the transfer started: %v", rb.at.Sub(start), err)
	select {
	case r := <-wonC:
		t.Fatalf("the cut-off member's Campaign returned: %+v", r)
	default:
	}
	if resp, err := a.client.Get(ctx, a.e.HandoverKey()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("handover record after the failed transfer: %v, %v", resp, err)
	}
}

// testHoldOffUntilExpiry: a handover record left behind by a holder that
// vanished, naming a member that does not campaign, keeps every other
// campaign from winning until the record's lease expires; a record with
// no lease is ignored.
func testHoldOffUntilExpiry(t *testing.T, s *etcdtest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := s.Client(t)
	prefix := newPrefix(t)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	hkey := b.e.HandoverKey()
	rec := `{"v":1,"from":"gone","to":"ghost","token":1}`

	// Without a lease the record is ignored: b wins at once.
	if _, err := admin.Put(ctx, hkey, rec); err != nil {
		t.Fatal(err)
	}
	tb := mustCampaign(t, b.e)
	if err := tb.Resign(ctx); err != nil {
		t.Fatal(err)
	}

	// On a lease, it holds b off until it expires.
	g, err := admin.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, hkey, rec, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	put := time.Now()
	won := campaignAsync(ctx, b.e, nil)
	waitCampaigning(t, ctx, b, prefix, 1, won)
	r := <-won
	if r.err != nil {
		t.Fatal(r.err)
	}
	if took := r.at.Sub(put); took < time.Second {
		t.Fatalf("b won %v after a handover to another member was written; want it to hold off until the record expires", took)
	}
	if resp, err := admin.Get(ctx, hkey); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("handover record after it expired: %v, %v", resp, err)
	}
}

// testTransferAheadCutOff: b, which waits ahead of c, is cut off from
// etcd and cannot give way; the transfer to c gives up after TTL/2 with
// ErrHandoverLapsed, removes its record, and a still holds its term.
func testTransferAheadCutOff(t *testing.T, s *etcdtest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", 2*time.Second)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	c := newMember(t, s, prefix, "c", 2*time.Second)
	ta := mustCampaign(t, a.e)
	wonB := campaignAsync(ctx, b.e, nil)
	waitCampaigning(t, ctx, b, prefix, 2, wonB)
	wonC := campaignAsync(ctx, c.e, nil)
	waitCampaigning(t, ctx, c, prefix, 3, wonC)

	b.proxy.Blackhole(etcdtest.Both)
	err := a.e.Transfer(ctx, "c")
	if !errors.Is(err, etcdlease.ErrHandoverLapsed) || !strings.Contains(err.Error(), "still holds") {
		t.Fatalf("Transfer past a cut-off member: %v, want ErrHandoverLapsed saying a still holds", err)
	}
	if ta.Err() != nil {
		t.Fatalf("a's term ended: %v", ta.Err())
	}
	if ok, err := stillHolds(ctx, a.client, ta); err != nil || !ok {
		t.Fatalf("a's key is gone: %v, %v", ok, err)
	}
	if resp, err := a.client.Get(ctx, a.e.HandoverKey()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("handover record after the stalled transfer: %v, %v", resp, err)
	}
	select {
	case r := <-wonC:
		t.Fatalf("c won although the transfer failed: %+v", r)
	default:
	}
}
