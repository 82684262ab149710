//go:build unix

package dns

import (
	"os"
	"syscall"
)

// terminate asks a command to stop; SIGKILL follows after the grace period.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
