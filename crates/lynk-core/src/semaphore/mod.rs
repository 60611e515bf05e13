//! Counting semaphores: N permits under one name, in one record.
