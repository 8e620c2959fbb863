// Placeholder so the package builds while this target is written; delete when the target has code.
