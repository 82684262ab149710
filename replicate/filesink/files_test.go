package filesink

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTempFileNotFollowed: a symbolic link planted at the state file's
// temporary name (to make the sink overwrite another file) is replaced,
// not written through; the files the sink creates are not readable by
// others.
func TestTempFileNotFollowed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target.log")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	if err := os.Symlink(victim, path+".state.tmp"); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(t.Context(), 1, recs(0, 3)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
		t.Fatalf("the file the link pointed to now holds %q (%v)", b, err)
	}
	checkData(t, path, recs(0, 3))
	for _, p := range []string{path, path + ".state", path + ".lock"} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o027 != 0 {
			t.Errorf("%s has mode %04o, want 0640 or tighter", p, fi.Mode().Perm())
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s is a symbolic link", p)
		}
	}
}
