package client

import (
	"errors"
	"strings"
	"testing"
)

func TestGRPCAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"localhost:9333", "localhost:19333"},
		{"10.0.0.5:8080", "10.0.0.5:18080"},
		{"[::1]:8080", "[::1]:18080"},
		{"127.0.0.1:1", "127.0.0.1:10001"},
		{"host:55535", "host:65535"},
		{"master:9333.7000", "master:7000"},
		{"master:60000.60001", "master:60001"},
		{"[::1]:8080.9090", "[::1]:9090"},
	} {
		got, err := GRPCAddress(tc.in)
		if err != nil {
			t.Errorf("GRPCAddress(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("GRPCAddress(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestGRPCAddressInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"localhost",        // no port
		"localhost:",       // empty port
		"localhost:0",      // port 0
		"localhost:-1",     // negative
		"localhost:70000",  // over 65535
		"localhost:http",   // not a number
		"localhost:60000",  // no room for +10000
		"localhost:55536",  // just over the room
		"localhost:8080.",  // empty gRPC port
		"localhost:.9090",  // empty HTTP port
		"localhost:8080.0", // gRPC port 0
		"localhost:0.9090", // HTTP port 0
		"localhost:8080.70000",
		"localhost:8080.90.1",
		"a:b:c",
	} {
		got, err := GRPCAddress(in)
		if err == nil {
			t.Errorf("GRPCAddress(%q) = %q, want an error", in, got)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("GRPCAddress(%q) error %v does not wrap ErrInvalid", in, err)
		}
		if !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("GRPCAddress(%q) error %q does not name the input", in, err)
		}
		if got != "" {
			t.Errorf("GRPCAddress(%q) returned %q with its error", in, got)
		}
	}
}

func TestGRPCAddressNoRoomSuggestsExplicitForm(t *testing.T) {
	_, err := GRPCAddress("h:60000")
	if err == nil || !strings.Contains(err.Error(), "host:port.grpcPort") {
		t.Fatalf("error %v should tell the user how to name the gRPC port", err)
	}
}
