"""Mail out: building the message bytes, and the SMTP and Maildir transports."""
