package hatest

import (
	"testing"
	"time"
)

func TestQuiet(t *testing.T) {
	w, err := NewWorld(1, Options{Log: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Run(10 * time.Second)
	h := w.History()
	if err := Check(h); err != nil {
		t.Fatal(err)
	}
	if w.Active() == "" {
		t.Fatal("no member active")
	}
	t.Logf("ops %d runs %d source %d target %d", len(h.Ops), len(h.Runs), len(h.Source), len(h.Target))
}
