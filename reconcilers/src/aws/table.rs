//! Placeholder: the table backend on AWS lands here.
