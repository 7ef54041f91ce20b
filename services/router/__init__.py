"""Router: decides who owns a matter (lead, cooperating, territorial units) from the plans' rulebooks."""
