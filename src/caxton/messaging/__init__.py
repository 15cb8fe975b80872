"""Messaging: FIPA-ACL envelopes, routing and mailboxes (DESIGN.md section 3)."""

from caxton.messaging.envelope import Incoming, Stamper, new_id

__all__ = ["Incoming", "Stamper", "new_id"]
