//! Host simulator: the real firmware device core over TCP with simulated inputs.
