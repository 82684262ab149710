package dns

import (
	"os"
	"strings"
)

// DefaultExecPath is the PATH a hook command gets when this process has
// none.
const DefaultExecPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// hookEnv builds a hook command's environment: PATH (this process's, or
// DefaultExecPath), then the entries of ExecConfig.Env, then the HAKIT_
// variables. Nothing else of this process's environment is passed on: it
// may hold the admin token, cloud credentials or a database password.
// An Env entry "NAME" passes this process's value of NAME, if it has
// one; "NAME=value" sets it; an entry for PATH replaces it, and one for
// a HAKIT_ variable is ignored.
func hookEnv(cfgEnv []string, extra ...string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = DefaultExecPath
	}
	env := []string{"PATH=" + path}
	for _, kv := range cfgEnv {
		name, _, set := strings.Cut(kv, "=")
		switch {
		case name == "" || strings.HasPrefix(name, "HAKIT_"):
			continue
		case !set:
			v, ok := os.LookupEnv(name)
			if !ok {
				continue
			}
			kv = name + "=" + v
		}
		if name == "PATH" {
			env[0] = kv
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
