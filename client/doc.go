// Package client is the one way to talk to a Kelp cluster: file-id assignment
// and volume lookup on the master (gRPC, with a location cache), blob upload,
// download and delete on volume servers (HTTP keep-alive, replica fallback),
// and the translation between gRPC status codes and error sentinels.
//
// It holds no global state. A MasterClient and a BlobClient are safe for
// concurrent use by many goroutines; each owns its connections and releases
// them in Close.
package client
