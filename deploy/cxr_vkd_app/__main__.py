try:
    from .app import main
except ImportError:  # started as `python <app folder>`, as an application package does: the folder is on sys.path
    from app import main

main()
