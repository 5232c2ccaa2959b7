"""sandbox-infra: persistent, isolated AI coding sandboxes for freelancers, declared from one roster file."""
