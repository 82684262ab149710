package raftlease

import (
	"testing"
	"time"
)

func TestCampaignPutGet(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := testCtx(t, 10*time.Second)
	a := c.groups["b"]
	term, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("b leads with token %d", term.Token())
	v, err := a.Store().Put(ctx, term.Token(), "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		it, err := c.groups[id].Store().Get(ctx, "k")
		if err != nil || string(it.Value) != "v" || it.Version != v {
			t.Fatalf("%s: Get = %v, %v", id, it, err)
		}
	}
	l, err := c.groups["c"].Leader(ctx)
	if err != nil || l.ID != "b" || l.Token != term.Token() {
		t.Fatalf("Leader on c = %+v, %v", l, err)
	}
}
