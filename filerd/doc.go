// Package filerd is the filer daemon: it serves the POSIX namespace of
// filerd/meta over gRPC (api/filerpb, for mounts and filer.sync) and HTTP
// (for people and scripts), streams the namespace's change log to
// subscribers, passes volume assignment and lookup through to the master,
// runs the chunk garbage collector that deletes blobs no file uses any
// more from the volume servers, and folds the chunk lists of files with
// very many chunks into manifest blobs (manifest.go), which it expands
// again for every reader.
//
// It owns the wiring (store, namespace, master client, listeners), the
// translation of meta's sentinel errors into gRPC statuses with an errno
// detail (errors.go, one table), the subscription feed (feed.go) and the GC
// and log-retention loops (gc.go, feed.go). It must not implement namespace
// semantics itself: every operation is decoded, handed to meta in one call
// and encoded. gRPC types stop in grpc.go, errors.go, feed.go and
// manifest.go (the manifest blob is a filerpb.ChunkManifest); meta knows
// nothing of them. It never imports another daemon; the master and the
// volume servers are reached through package client.
//
// # Concurrency
//
// A Server is safe for concurrent use. Every goroutine it starts (the two
// listeners' serve loops, the GC loop, the retention loop, the fold loop and
// one sender per subscription) is owned by the Server and stopped and
// waited for by Close.
package filerd
