//go:build !linux

package cache

import (
	"io/fs"
	"time"
)

// recency is when a cache file was last used as far as we can tell
// portably: its mtime.
func recency(info fs.FileInfo) time.Time { return info.ModTime() }
