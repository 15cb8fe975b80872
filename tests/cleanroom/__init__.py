"""Clean-room contract tests: agents written only from DESIGN.md sections 2-5."""
