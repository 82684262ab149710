//go:build unix

package dns

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts a command in a process group of its own, so that a
// timeout reaches the children a hook script started, too.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks a command's process group to stop; SIGKILL follows
// after the grace period.
func terminate(cmd *exec.Cmd) error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// killGroup kills whatever is left of a stopped command's process group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
