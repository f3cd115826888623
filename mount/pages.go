package mount

import "sync"

// pageStates remembers, per inode, the content (mtime and size) the
// kernel's page cache holds, across opens: an open that finds the file
// unchanged keeps those pages (FOPEN_KEEP_CACHE) instead of reading the
// file through FUSE again. The watcher forgets an inode another client
// changed.
type pageStates struct {
	mu sync.Mutex
	m  map[uint64]pageState
}

type pageState struct{ mtime, size int64 }

// maxPageStates bounds the memory; past it the map starts over (opens
// then drop the kernel's pages once, which is only slower).
const maxPageStates = 1 << 17

// keep reports whether the kernel's pages of ino are the content
// (mtime, size), and records that they are from now on.
func (p *pageStates) keep(ino uint64, mtime, size int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.m[ino]
	p.setLocked(ino, mtime, size)
	return ok && st.mtime == mtime && st.size == size && mtime != 0
}

// cached says whether the kernel may hold ino's pages as of mtime and
// size (what keep would answer), without recording anything.
func (p *pageStates) cached(ino uint64, mtime, size int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.m[ino]
	return ok && st.mtime == mtime && st.size == size && mtime != 0
}

func (p *pageStates) set(ino uint64, mtime, size int64) {
	p.mu.Lock()
	p.setLocked(ino, mtime, size)
	p.mu.Unlock()
}

func (p *pageStates) setLocked(ino uint64, mtime, size int64) {
	if p.m == nil || len(p.m) >= maxPageStates {
		p.m = make(map[uint64]pageState)
	}
	p.m[ino] = pageState{mtime, size}
}

func (p *pageStates) forget(ino uint64) {
	p.mu.Lock()
	delete(p.m, ino)
	p.mu.Unlock()
}

func (p *pageStates) reset() {
	p.mu.Lock()
	p.m = nil
	p.mu.Unlock()
}
