package client

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// GRPCPortOffset is how far a daemon's gRPC port sits above its HTTP port
// unless set explicitly.
const GRPCPortOffset = 10000

// GRPCAddress turns a daemon address as users write it into its gRPC
// address: "host:port" means gRPC on port+10000, "host:port.grpcPort" names
// the gRPC port explicitly (the SeaweedFS form).
func GRPCAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w: want host:port", addr, ErrInvalid)
	}
	if httpPort, grpcPort, ok := strings.Cut(port, "."); ok {
		if _, err := parsePort(httpPort); err != nil {
			return "", fmt.Errorf("address %q: %w", addr, err)
		}
		gp, err := parsePort(grpcPort)
		if err != nil {
			return "", fmt.Errorf("address %q: %w", addr, err)
		}
		return net.JoinHostPort(host, strconv.Itoa(gp)), nil
	}
	p, err := parsePort(port)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if p+GRPCPortOffset > 65535 {
		return "", fmt.Errorf("address %q: %w: port %d leaves no room for gRPC at +%d; give it as host:port.grpcPort", addr, ErrInvalid, p, GRPCPortOffset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+GRPCPortOffset)), nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%w: bad port %q", ErrInvalid, s)
	}
	return p, nil
}
