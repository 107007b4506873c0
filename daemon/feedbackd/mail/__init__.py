"""Mail in and out: fetching, parsing, loop guarding, composing and sending."""
