//go:build linux

package cache

import (
	"io/fs"
	"syscall"
	"time"
)

// recency is when a cache file was last used as far as the filesystem
// knows: the later of its atime (coarse under relatime) and mtime.
func recency(info fs.FileInfo) time.Time {
	t := info.ModTime()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		if a := time.Unix(st.Atim.Sec, st.Atim.Nsec); a.After(t) {
			return a
		}
	}
	return t
}
