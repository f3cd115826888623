package main

// FUSE over io_uring, as Linux 6.14+ defines it (fs/fuse/dev_uring.c):
//
//   - After INIT (with FUSE_OVER_IO_URING agreed), the server registers
//     ring entries: IORING_OP_URING_CMD on the /dev/fuse fd, 128-byte SQEs,
//     command FUSE_IO_URING_CMD_REGISTER, with an iovec pair (a 288-byte
//     header area and a payload buffer of at least the connection's
//     largest request) and the queue id in struct fuse_uring_cmd_req.
//     There is one queue per possible CPU; once each has an entry, every
//     new request goes to the queue of the CPU its caller runs on.
//   - A request completes the entry's command: the header area holds
//     fuse_in_header (offset 0), the op's own header (offset 128) and
//     struct fuse_uring_ent_in_out (offset 256: flags, commit_id,
//     payload_sz); the rest of the request is in the payload buffer.
//   - The answer goes back the same way: fuse_out_header at offset 0, the
//     out arguments in the payload buffer, their length in payload_sz,
//     then FUSE_IO_URING_CMD_COMMIT_AND_FETCH with the commit_id, which
//     also waits for the entry's next request.
//   - When the connection ends, the kernel completes every waiting entry
//     with -ENOTCONN.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const (
	sysIOUringSetup = 425 // x86-64 and arm64 alike
	sysIOUringEnter = 426

	ioringSetupCoopTaskrun = 1 << 8
	ioringSetupSQE128      = 1 << 10
	ioringEnterGetevents   = 1 << 0
	ioringEnterExtArg      = 1 << 3
	ioringOffSQEs          = 0x10000000
	ioringOpURingCmd       = 46
	sqeSize                = 128 // IORING_SETUP_SQE128
	cqeSize                = 16

	fuseURingCmdRegister       = 1
	fuseURingCmdCommitAndFetch = 2

	ringHeaderSize = 288 // struct fuse_uring_req_header
	opInOffset     = 128
	entInOutOffset = 256

	// entriesPerQueue: one request in the handler and one waiting.
	entriesPerQueue = 2
)

// ioURingParams is struct io_uring_params.
type ioURingParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  [10]uint32 // head, tail, ring_mask, ring_entries, flags, dropped, array, resv1, user_addr (u64)
	cqOff                                                                  [10]uint32 // head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1, user_addr (u64)
}

// ring is one io_uring instance, used by one thread only.
type ring struct {
	fd          int
	rings       []byte // SQ and CQ rings (one mapping, IORING_FEAT_SINGLE_MMAP)
	sqes        []byte
	sqHead      *uint32
	sqTail      *uint32
	sqMask      uint32
	sqArray     uintptr
	cqHead      *uint32
	cqTail      *uint32
	cqMask      uint32
	cqes        uintptr
	unsubmitted uint32
}

func newRing(entries uint32) (*ring, error) {
	p := ioURingParams{flags: ioringSetupSQE128 | ioringSetupCoopTaskrun}
	fd, _, errno := unix.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd)}
	size := max(int(p.sqOff[6])+int(p.sqEntries)*4, int(p.cqOff[5])+int(p.cqEntries)*cqeSize)
	var err error
	if r.rings, err = unix.Mmap(r.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		unix.Close(r.fd)
		return nil, fmt.Errorf("map io_uring rings: %w", err)
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSQEs, int(p.sqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("map io_uring SQEs: %w", err)
	}
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.rings[off])) }
	r.sqHead, r.sqTail, r.sqMask, r.sqArray = u32(p.sqOff[0]), u32(p.sqOff[1]), *u32(p.sqOff[2]), uintptr(p.sqOff[6])
	r.cqHead, r.cqTail, r.cqMask, r.cqes = u32(p.cqOff[0]), u32(p.cqOff[1]), *u32(p.cqOff[2]), uintptr(p.cqOff[5])
	return r, nil
}

func (r *ring) close() {
	if r.sqes != nil {
		_ = unix.Munmap(r.sqes)
	}
	if r.rings != nil {
		_ = unix.Munmap(r.rings)
	}
	unix.Close(r.fd)
}

// push fills the next SQE and makes it visible to the kernel; enter
// submits it.
func (r *ring) push(fill func(sqe []byte)) {
	tail := *r.sqTail
	idx := tail & r.sqMask
	sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	fill(sqe)
	*(*uint32)(unsafe.Pointer(&r.rings[r.sqArray+uintptr(idx)*4])) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	r.unsubmitted++
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// enter submits what push queued and, with wait, waits up to timeout for
// a completion. ETIME (timed out) and EINTR are not errors.
func (r *ring) enter(wait bool, timeout time.Duration) error {
	var flags, minComplete uintptr
	var arg getEventsArg
	ts := unix.NsecToTimespec(int64(timeout))
	if wait {
		flags, minComplete = ioringEnterGetevents|ioringEnterExtArg, 1
		arg.ts = uint64(uintptr(unsafe.Pointer(&ts)))
	}
	_, _, errno := unix.Syscall6(sysIOUringEnter, uintptr(r.fd), uintptr(r.unsubmitted), minComplete, flags,
		uintptr(unsafe.Pointer(&arg)), unsafe.Sizeof(arg))
	runtime.KeepAlive(&ts)
	switch errno {
	case 0:
		r.unsubmitted = 0
		return nil
	case unix.ETIME, unix.EINTR:
		// Whatever was submitted before the wait stays submitted.
		if atomic.LoadUint32(r.sqHead) == *r.sqTail {
			r.unsubmitted = 0
		}
		return nil
	}
	return fmt.Errorf("io_uring_enter: %w", errno)
}

// reap calls fn for each completion waiting.
func (r *ring) reap(fn func(userData uint64, res int32)) {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		cqe := unsafe.Pointer(&r.rings[r.cqes+uintptr(head&r.cqMask)*cqeSize])
		fn(*(*uint64)(cqe), *(*int32)(unsafe.Add(cqe, 8)))
	}
	atomic.StoreUint32(r.cqHead, head)
}

// entry is one registered ring entry: its header area and payload buffer,
// in memory of their own (the kernel writes to them at any time).
type entry struct {
	mem     []byte
	header  []byte
	payload []byte
	iov     [2]unix.Iovec
	// small holds a copy of a small request payload: the answer is
	// written into the payload buffer while the request may still be
	// read from it (a name, say).
	small [4096]byte
}

func newEntry(payloadSize int) (*entry, error) {
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, page+payloadSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map a ring entry: %w", err)
	}
	e := &entry{mem: mem, header: mem[:ringHeaderSize], payload: mem[page:]}
	e.iov[0] = unix.Iovec{Base: &e.header[0]}
	e.iov[0].SetLen(len(e.header))
	e.iov[1] = unix.Iovec{Base: &e.payload[0]}
	e.iov[1].SetLen(len(e.payload))
	return e, nil
}

func putU16(b []byte, off int, v uint16) { *(*uint16)(unsafe.Pointer(&b[off])) = v }
func putU32(b []byte, off int, v uint32) { *(*uint32)(unsafe.Pointer(&b[off])) = v }
func putU64(b []byte, off int, v uint64) { *(*uint64)(unsafe.Pointer(&b[off])) = v }
func getU32(b []byte, off int) uint32    { return *(*uint32)(unsafe.Pointer(&b[off])) }
func getU64(b []byte, off int) uint64    { return *(*uint64)(unsafe.Pointer(&b[off])) }

// fillCmd writes a FUSE ring command for entry i of queue qid.
func fillCmd(sqe []byte, devFD int, cmd uint32, i int, qid int, commitID uint64, iov *[2]unix.Iovec) {
	sqe[0] = ioringOpURingCmd
	putU32(sqe, 4, uint32(devFD))
	putU32(sqe, 8, cmd) // cmd_op
	if iov != nil {
		putU64(sqe, 16, uint64(uintptr(unsafe.Pointer(&iov[0])))) // addr
		putU32(sqe, 24, uint32(len(iov)))                         // len
	}
	putU64(sqe, 32, uint64(i)) // user_data
	// struct fuse_uring_cmd_req at the command area (offset 48).
	putU64(sqe, 56, commitID)
	putU16(sqe, 64, uint16(qid))
}

// uringQueues are the running queue threads.
type uringQueues struct {
	n        *atomic.Int64 // requests answered
	stopping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	errs     []error
}

// startURing registers entriesPerQueue entries on every queue, each queue
// served by a thread pinned to its CPU, and returns once all are
// registered (the kernel then sends every request through them).
func startURing(ps *fuse.ProtocolServer, devFD, payloadSize int, n *atomic.Int64) (*uringQueues, error) {
	ncpu, err := possibleCPUs()
	if err != nil {
		return nil, err
	}
	q := &uringQueues{n: n}
	for qid := 0; qid < ncpu; qid++ {
		ready := make(chan error, 1)
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			if err := q.serveQueue(ps, devFD, qid, payloadSize, ready); err != nil {
				q.mu.Lock()
				q.errs = append(q.errs, fmt.Errorf("io_uring queue %d: %w", qid, err))
				q.mu.Unlock()
			}
		}()
		if err := <-ready; err != nil {
			q.stop()
			return nil, fmt.Errorf("io_uring queue %d: %w", qid, err)
		}
	}
	return q, nil
}

// stop waits for the queues to see the connection end (or stopTimeout).
func (q *uringQueues) stop() error {
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		q.stopping.Store(true) // they look at it at least once a second
		<-done
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return errors.Join(q.errs...)
}

// serveQueue runs on a thread of its own, pinned to CPU qid: the kernel
// wakes it for requests made on that CPU, so caller and server take turns
// on one CPU instead of waking another.
func (q *uringQueues) serveQueue(ps *fuse.ProtocolServer, devFD, qid, payloadSize int, ready chan<- error) error {
	// The thread is never unlocked: it dies with the goroutine, and its
	// CPU affinity with it.
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(qid)
	if err := unix.SchedSetaffinity(0, &set); err != nil && !errors.Is(err, unix.EINVAL) {
		ready <- fmt.Errorf("pin to CPU %d: %w", qid, err)
		return nil
	} // EINVAL: the CPU is offline; the queue still has to exist.
	r, err := newRing(2 * entriesPerQueue)
	if err != nil {
		ready <- err
		return nil
	}
	defer r.close()
	entries := make([]*entry, entriesPerQueue)
	for i := range entries {
		e, err := newEntry(payloadSize)
		if err != nil {
			ready <- err
			return nil
		}
		defer unix.Munmap(e.mem)
		entries[i] = e
		r.push(func(sqe []byte) { fillCmd(sqe, devFD, fuseURingCmdRegister, i, qid, 0, &e.iov) })
	}
	if err := r.enter(false, 0); err != nil {
		ready <- fmt.Errorf("register ring entries: %w", err)
		return nil
	}
	ready <- nil
	live := len(entries)
	var failed error
	for live > 0 && !q.stopping.Load() {
		if err := r.enter(true, time.Second); err != nil {
			return err
		}
		r.reap(func(ud uint64, res int32) {
			if res < 0 {
				// ENOTCONN: the connection ended; others are
				// errors, but end the entry all the same.
				if e := syscall.Errno(-res); e != unix.ENOTCONN && failed == nil {
					failed = fmt.Errorf("ring entry %d: %w", ud, e)
				}
				live--
				return
			}
			q.n.Add(1)
			commitID := answer(ps, entries[ud])
			r.push(func(sqe []byte) { fillCmd(sqe, devFD, fuseURingCmdCommitAndFetch, int(ud), qid, commitID, nil) })
		})
	}
	return failed
}

// answer handles the request in e and leaves the answer in e for the
// commit; it returns the commit id.
func answer(ps *fuse.ProtocolServer, e *entry) uint64 {
	h := e.header
	total := int(getU32(h, 0)) // fuse_in_header.len: the whole request
	commitID := getU64(h, entInOutOffset+8)
	payloadLen := int(getU32(h, entInOutOffset+16))
	opLen := total - inHeaderSize - payloadLen
	w := 0
	if opLen >= 0 && opLen <= entInOutOffset-opInOffset && payloadLen <= len(e.payload) {
		payload := e.payload[:payloadLen]
		if payloadLen <= len(e.small) {
			payload = e.small[:copy(e.small[:], payload)]
		}
		in := [][]byte{h[:inHeaderSize], h[opInOffset : opInOffset+opLen], payload}
		out := [][]byte{h[:outHeaderSize], e.payload}
		var st fuse.Status
		if w, st = ps.HandleRequest(in, out); !st.Ok() {
			w = 0
		}
	}
	if w < outHeaderSize {
		// Not understood: answer EIO (the unique stays in place).
		unique := getU64(h, 8)
		putU32(h, 0, outHeaderSize)
		eio := -int32(unix.EIO)
		putU32(h, 4, uint32(eio))
		putU64(h, 8, unique)
		w = outHeaderSize
	}
	putU32(h, entInOutOffset+16, uint32(w-outHeaderSize))
	return commitID
}

// possibleCPUs is the number of CPUs the kernel may ever bring up, which is
// the number of queues it expects.
func possibleCPUs() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, fmt.Errorf("possible CPUs: %w", err)
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(part, "-")
		if !found {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || h < l {
			return 0, fmt.Errorf("possible CPUs: cannot parse %q", b)
		}
		n = max(n, h+1)
	}
	return n, nil
}
