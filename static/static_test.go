package static

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestVendoredFilesMatchVERSIONS catches a vendored library edited or swapped by accident
// (htmx 4 dropped sse-swap: taking it by mistake breaks every live page).
func TestVendoredFilesMatchVERSIONS(t *testing.T) {
	versions, err := FS.Open("VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	defer versions.Close()
	checked := 0
	scanner := bufio.NewScanner(versions)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		want, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("VERSIONS line %q: want \"<sha256>  <file>\"", line)
		}
		data, err := FS.ReadFile(name)
		if err != nil {
			t.Fatalf("%s listed in VERSIONS but not embedded: %v", name, err)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, VERSIONS says %s", name, got, want)
		}
		checked++
	}
	if checked != 2 {
		t.Errorf("checked %d vendored files, want 2 (htmx and its SSE extension)", checked)
	}
}
