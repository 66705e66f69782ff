// Package static embeds the browser assets: the vendored htmx and its SSE extension (pinned,
// with their SHA-256 in VERSIONS) and the stylesheet.
package static

import "embed"

// FS holds every file served under /static/.
//
//go:embed *.js *.css *.svg VERSIONS
var FS embed.FS
