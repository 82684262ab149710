//go:build !unix

package dns

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

// terminate stops a command where there is no SIGTERM.
func terminate(cmd *exec.Cmd) error { return cmd.Process.Kill() }

func killGroup(*exec.Cmd) {}
