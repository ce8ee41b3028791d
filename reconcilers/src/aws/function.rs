//! Placeholder: the function backend on AWS lands here.
