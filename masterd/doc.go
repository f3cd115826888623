// Package masterd is the master daemon of Kelp's blob store. It owns the
// cluster topology learned from the volume servers' heartbeat streams, grows
// volumes by replication string, hands out file ids (volume, key, cookie)
// from a sequencer that never reissues a key after a restart, answers
// volume lookups, and triggers vacuum on volumes above a garbage threshold.
//
// It serves the Master gRPC service (api/masterpb) for volume servers and
// other daemons, and an HTTP API shaped like SeaweedFS's master:
// /dir/assign, /dir/lookup, /dir/status, /vol/grow, /vol/vacuum and
// /cluster/status. It calls the volume servers' admin gRPC API
// (api/volumepb) to allocate and vacuum volumes.
//
// It must not import other daemons; the cluster model itself lives in the
// pure package masterd/topology, and gRPC types stop in grpc.go.
//
// Concurrency: a Server is safe for concurrent use. Serve owns every
// goroutine it starts (gRPC and HTTP servers, the node expiry loop, the
// vacuum loop) and Close stops them. Volume growth is serialised by one
// mutex, vacuum runs by another.
package masterd
