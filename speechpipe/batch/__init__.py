"""Archive runs: engines (local, Ray), the resumable manifest, sampling calls for review."""
