//! Placeholder: the topic backend on AWS lands here.
