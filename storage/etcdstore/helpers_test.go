package etcdstore_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// prefixes hands out a fresh prefix per store, so that the subtests of a
// suite share one server without seeing each other's keys.
var prefixes atomic.Int64

func freshPrefix(t testing.TB) string {
	return fmt.Sprintf("test/%s/%d/", t.Name(), prefixes.Add(1))
}

// exampleT stands in for the *testing.T that a real test passes to
// etcdtest.Start; examples have none. It provides just what etcdtest
// calls.
type exampleT struct {
	testing.TB // nil: calling anything else panics
	cleanups   []func()
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                      {}
func (t *exampleT) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatal(args ...any)            { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "etcdstore-example")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// cleanup runs the registered cleanups, last first, as testing does.
func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
