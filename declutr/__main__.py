"""``python -m declutr``: the command line (importing this module runs nothing)."""

from declutr.commands import main

if __name__ == "__main__":
    main()
