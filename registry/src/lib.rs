//! OCI distribution client: reference normalisation, auth, and pull/push that move only the blobs
//! the other side lacks.
