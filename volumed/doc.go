// Package volumed is the volume server: it keeps needle volumes on local
// disks (volumed/storage), serves the HTTP blob API, replicates every write
// and delete to the other replicas of its volume before acknowledging it,
// answers the master's admin gRPC calls (allocate, vacuum, ...) and keeps a
// heartbeat stream open to the master reporting its volumes.
//
// It must not import other daemons; it talks to the master through client
// and api/masterpb. A Server is safe for concurrent use; Serve owns every
// goroutine it starts and Close stops them.
package volumed
