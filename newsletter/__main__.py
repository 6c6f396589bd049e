"""Allow ``python -m newsletter``; also the ``newsletter`` command's entry point."""


def main() -> None:
    """Run the command line. The import is here, not at the top: worker processes re-import
    the main module (multiprocessing's spawn), and need none of the CLI."""
    from newsletter.cli import main as run

    run()


if __name__ == "__main__":
    main()
