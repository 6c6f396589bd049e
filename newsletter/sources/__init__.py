"""Sources: the kinds of service papers are fetched from and the readers of each digest
format (``registry``), fetching over HTTP (``fetch``), reading a file by its content
(``read``), and the fetch use case (``service``)."""
