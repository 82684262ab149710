package etcdtest

import (
	"fmt"
	"os"
	"testing"
)

// Standalone is a testing.TB for code that has no test to attach a server
// to, such as a runnable Example: Fatal and Fatalf panic, TempDir makes a
// directory that Close removes, and Close runs the cleanups, last first, as
// testing does. It provides what Start, NewProxy and the clients call;
// any other testing.TB method panics.
type Standalone struct {
	testing.TB // nil: the methods not defined here are not supported
	name       string
	cleanups   []func()
}

// NewStandalone returns a Standalone whose Name is name.
func NewStandalone(name string) *Standalone { return &Standalone{name: name} }

// Name returns the name given to NewStandalone.
func (t *Standalone) Name() string { return t.name }

// Helper does nothing.
func (t *Standalone) Helper() {}

// Cleanup registers f to run at Close.
func (t *Standalone) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// Fatal panics with its arguments.
func (t *Standalone) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// Fatalf panics with the formatted message.
func (t *Standalone) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// TempDir returns a new temporary directory that Close removes.
func (t *Standalone) TempDir() string {
	dir, err := os.MkdirTemp("", "etcdtest-"+t.name)
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the registered cleanups, last first.
func (t *Standalone) Close() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
