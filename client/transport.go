package client

import "google.golang.org/grpc"

// Flow-control windows every Kelp gRPC connection uses, on both ends.
// Fixed windows turn off gRPC's bandwidth estimator, which otherwise
// sends a PING (and gets an ACK) after nearly every small message: on
// loopback that was three extra write syscalls per metadata call, and a
// filer round trip went from ~130 to ~90 µs without them. 4 MiB per
// stream is a chunk's worth of data; one connection multiplexes many.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// TransportDialOptions are the transport settings of every client
// connection to a Kelp daemon.
func TransportDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
}

// TransportServerOptions are the matching settings of every Kelp daemon's
// gRPC server.
func TransportServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.NumStreamWorkers(16),
	}
}
