"""Files people edit and files the program keeps: safe YAML with lines, the problems
found in them, state caches, pickling."""
