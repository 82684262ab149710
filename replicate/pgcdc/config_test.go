package pgcdc

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfigValidate: every broken rule is reported, joined, naming the
// field; validate does not modify the config; the connection string's
// content never appears in an error.
func TestConfigValidate(t *testing.T) {
	bad := Config{ConnString: "postgres://u:secret@h:notaport/db", Slot: "Bad-Slot", Publication: "", HeartbeatTable: "a.b.c",
		StatusInterval: time.Minute, SlotWait: -time.Second, MaxTransactionBytes: -1, BufferBytes: -2, LoadBatchRows: -3}
	before := bad
	err := bad.withDefaults().validate()
	if bad != before {
		t.Error("withDefaults or validate modified the config")
	}
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
	for _, w := range []string{
		"pgcdc: invalid config: ConnString: cannot be parsed", "Slot: must be a lower-case identifier", `Publication: must be a lower-case identifier of letters, digits and underscores, not ""`,
		"HeartbeatTable: must be a lower-case (schema.)identifier", "StatusInterval: must be at most 30s", "SlotWait: must be positive",
		"MaxTransactionBytes: must be positive", "BufferBytes: must be positive", "LoadBatchRows: must be positive",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the connection string: %v", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "ConnString: is required") {
		t.Errorf("New(zero): %v", err)
	}
	ok := Config{ConnString: "postgres://u@h/db", Slot: "s", Publication: "p", InitialLoad: true}.withDefaults()
	if err := ok.validate(); err != nil || !ok.CreateSlot || ok.StatusInterval != DefaultStatusInterval {
		t.Errorf("defaults: %+v, %v", ok, err)
	}
}
