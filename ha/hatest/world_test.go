package hatest

import (
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestQuiet(t *testing.T) {
	var log strings.Builder
	w, err := NewWorld(1, Options{Log: func(s string) { log.WriteString(s + "\n") }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Run(10 * time.Second)
	h := w.History()
	if err := Check(h); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if w.Active() == "" || len(h.Runs) != 1 {
		t.Fatalf("active %q after %d runs, want one run that lasts\n%s", w.Active(), len(h.Runs), log.String())
	}
	// With no faults the sink keeps up with the source to within a batch
	// or two.
	if lag := len(h.Source) - len(h.Target); lag < 0 || lag > 2*4 {
		t.Fatalf("sink lags the source by %d records", lag)
	}
}

// TestDeterministic runs the same seed and schedule twice and expects the
// same history, call for call.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for range 10 {
		seed, s := rng.Int63(), randomSchedule(rng, 3, 6)
		a, _ := runSchedule(t, seed, s, Options{})
		b, _ := runSchedule(t, seed, s, Options{})
		if !reflect.DeepEqual(render(a), render(b)) {
			t.Fatalf("seed %d schedule %v: two runs differ", seed, s)
		}
	}
}

func render(h *History) []string {
	var out []string
	for _, o := range h.Ops {
		out = append(out, fmt.Sprintf("%v %q %d %v", o, o.Value, o.Seq, o.Applied))
	}
	for _, r := range h.Runs {
		out = append(out, fmt.Sprintf("%+v", r))
	}
	for _, g := range h.Grants {
		out = append(out, fmt.Sprintf("%+v", g))
	}
	return append(out, h.Target...)
}

func TestNewWorldRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{MaxDrift: 0.5}, {MaxDrift: -0.1}, {Members: -1}, {Batch: -2}} {
		if _, err := NewWorld(1, o); !errors.Is(err, ErrConfig) {
			t.Errorf("NewWorld(%+v) = %v, want ErrConfig", o, err)
		}
	}
}

// TestSicken: an active member whose health check fails steps down and
// another takes over; cured, it stays a standby (manual failback).
func TestSicken(t *testing.T) {
	w, err := NewWorld(5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Run(time.Second)
	first := w.Active()
	w.Sicken(first)
	w.Run(2 * time.Second)
	second := w.Active()
	if second == "" || second == first {
		t.Fatalf("active after sickening %s: %q", first, second)
	}
	w.Cure(first)
	w.Run(3 * time.Second)
	if got := w.Active(); got != second {
		t.Fatalf("active after curing %s: %q, want %s to stay", first, got, second)
	}
	if err := Check(w.History()); err != nil {
		t.Fatal(err)
	}
}
