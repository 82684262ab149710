//go:build !unix

package dns

import "os"

// terminate stops a command where there is no SIGTERM.
func terminate(p *os.Process) error { return p.Kill() }
