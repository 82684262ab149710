package pgsink

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	bad := Config{ConnString: "postgres://u:secret@h:x/db", PositionTable: "1bad", HeartbeatTable: "a b", MaxRowsPerStatement: 5000}
	err := bad.withDefaults().validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
	for _, w := range []string{"pgsink: invalid config: ConnString: cannot be parsed", "Stream: is required", `PositionTable: must be a (schema.)identifier`,
		"HeartbeatTable: must be", "MaxRowsPerStatement: must be between 1 and 1000"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the connection string: %v", err)
	}
	if _, err := New(Config{ConnString: "postgres://u@h/db", Stream: "s"}); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
