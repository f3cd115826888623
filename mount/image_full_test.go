package mount

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// After an image write finds the disk full (ENOSPC, from /dev/full here),
// new files get no image for imageFullBackoff; another write error does
// not hold images back.
func TestImageDiskFullHoldsBackNewImages(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failWith string // the device the image's writes go to
		holdBack bool
	}{
		{"ENOSPC", "/dev/full", true},
		{"EBADF", "", false}, // the image file opened read-only
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newImageStore(filepath.Join(t.TempDir(), "images"), 64<<20, 1, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			s.setBacker(&fakeBacker{})
			t.Cleanup(func() { _ = s.close() })
			fs := imageFS(s)

			f1 := writer(fs, 1, 1)
			write(t, f1, pattern(imageMinWrite, 1), 0) // starts an inline image
			s.mu.Lock()
			img := s.images[1]
			s.mu.Unlock()
			if img == nil || !img.inline {
				t.Fatal("setup: want an inline image of the first file")
			}
			write(t, f1, pattern(imageMinWrite, 2), imageMinWrite)
			breakImage(t, img, tc.failWith)
			seal(f1) // queued for the image; its write fails
			waitFor(t, "the failed image dropped", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.images[1] == nil
			})

			f2 := writer(fs, 2, 1)
			write(t, f2, pattern(imageMinWrite, 3), 0)
			if got := s.Stats().Images == 1; got != !tc.holdBack {
				t.Fatalf("a new file got an image: %v, want %v", got, !tc.holdBack)
			}
			if !tc.holdBack {
				return
			}
			// The back-off runs out.
			s.mu.Lock()
			if until := time.Until(s.fullUntil); until <= 0 || until > imageFullBackoff {
				t.Errorf("back-off ends in %v, want about %v", until, imageFullBackoff)
			}
			s.fullUntil = time.Now()
			s.mu.Unlock()
			f3 := writer(fs, 3, 1)
			write(t, f3, pattern(imageMinWrite, 4), 0)
			if s.Stats().Images != 1 {
				t.Fatal("no image for a new file after the back-off")
			}
		})
	}
}

// breakImage makes img's writes fail: they go to dev, or (dev "") to
// the image file opened read-only.
func breakImage(t *testing.T, img *image, dev string) {
	t.Helper()
	var bad *os.File
	var err error
	if dev != "" {
		bad, err = os.OpenFile(dev, os.O_WRONLY, 0)
	} else {
		bad, err = os.Open(img.path)
	}
	if err != nil {
		t.Fatal(err)
	}
	img.mu.Lock()
	good := img.fd
	img.fd = bad
	img.mu.Unlock()
	t.Cleanup(func() { good.Close() })
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
