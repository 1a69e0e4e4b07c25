"""``python -m tokysnatcher``."""

from tokysnatcher.cli import main

if __name__ == "__main__":
    main()
