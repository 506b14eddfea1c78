//! TCP listener, sessions and the command dispatcher.
