//! Multi-locks: several names taken all or nothing, in one global order.
