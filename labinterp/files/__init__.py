"""Result files: the CSV readers and the streaming job shared by the command line and the CSV door."""
